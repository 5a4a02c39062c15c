#!/usr/bin/env bash
# Issue 13's GPU check in one command, on a machine with a CUDA GPU, Python 3.12, torch and numpy
# but none of this project's other dependencies (nothing can be downloaded there):
#
#     bash scripts/gpu_check.sh
#
# 1. installs the wheels carried in .whl/ into /tmp/site (torch and numpy stay the machine's) and
#    puts that and the repository on PYTHONPATH (no `pip install -e .` needed);
# 2. env.txt: GPU, driver, versions, and an import of every package the project needs;
# 3. pytest.txt: `pytest -m gpu` (tests/test_gpu.py), then the fast agent/rollout tests on CPU;
# 4. bench.txt, bench.jsonl, profile.txt: scripts/bench_train.py on HalfCheetahDir, 40 and 160
#    tasks x 20 episodes x 100 steps, MAML-TRPO and ProMP, CUDA then CPU on the same machine
#    (CPU: torch and MuJoCo use every core, `nproc`), and a summary table at the end.
#
# Everything goes to $OUT (./gpu_out when OUT is unset). Each section runs even if an earlier one
# failed, under a timeout, so that the whole script ends within GPU_CHECK_SECONDS (420 s); on a
# 16-core H100/H200 machine it takes about 3 to 5 minutes. The exit status is 1 if any section
# failed.
#
# The wheels (Python 3.12, manylinux x86_64, about 27 MiB; .git/info/exclude ignores .whl/): every
# requirement of pyproject.toml that the device image lacks, with their own requirements:
#     pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#         --platform manylinux1_x86_64 -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 \
#         mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 pyopengl==3.1.10 \
#         websockets==17.4 dotmap==1.3.30 gym-notices==0.1.0 typing-extensions==4.15.0
#     pip wheel --no-deps -w .whl cherry-rl==0.2.0 gym==0.25.2      # sdists, pure Python
#
# Variables: OUT; GPU_CHECK_QUICK=1 for tiny sizes (a dry run of every command, e.g. on a machine
# without a GPU); GPU_CHECK_WHEELS (folder of wheels, .whl); GPU_CHECK_SITE (/tmp/site);
# GPU_CHECK_SECONDS (420); PYTHON (python3).
set -uo pipefail
cd "$(dirname "$0")/.." || exit
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
WHEELS="${GPU_CHECK_WHEELS:-.whl}"
SITE="${GPU_CHECK_SITE:-/tmp/site}"
DEADLINE="${GPU_CHECK_SECONDS:-420}"
CPUS="$(nproc)"
FAILED=()

# run NAME LOG CAP CMD...: CMD under a timeout of CAP seconds (less if the deadline is nearer),
# its output to the terminal and appended to $OUT/LOG.
run() {
    local name=$1 log="$OUT/$2" cap=$3 left rc
    shift 3
    left=$((DEADLINE - SECONDS))
    ((left < cap)) && cap=$left
    if ((cap < 10)); then
        echo "== $name: skipped, the ${DEADLINE}s deadline is near" | tee -a "$log"
        FAILED+=("$name (skipped)")
        return
    fi
    echo "== $name (at ${SECONDS}s, at most ${cap}s): $*" | tee -a "$log"
    timeout -k 10 "$cap" "$@" 2>&1 | tee -a "$log"
    rc=$?
    echo "== $name: exit $rc at ${SECONDS}s" | tee -a "$log"
    ((rc == 0)) || FAILED+=("$name (exit $rc)")
}

run install env.txt 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHEELS"/*.whl
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

run system env.txt 60 bash -c 'date -u; uname -srm; nproc; free -g | head -2; nvidia-smi
    git log -1 --oneline 2>/dev/null || echo "no git history here"'
run versions env.txt 60 "$PY" - <<'EOF'
import importlib.metadata as md
import platform

import numpy
import torch

print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("numpy", numpy.__version__, "torch threads", torch.get_num_threads())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, p.total_memory // 2**20, "MiB", p.multi_processor_count, "SMs")
else:
    print("gpu: torch sees no CUDA device")
for name in ("gymnasium", "mujoco", "mujoco-core", "cherry-rl", "gym", "typing_extensions",
             "cloudpickle", "pillow", "tqdm", "six", "pytest"):
    try:
        print(name, md.version(name))
    except md.PackageNotFoundError:
        print(name, "MISSING")
import agents, envs, metarl, metarl._cherry  # the project's own imports
print("imports ok: agents envs metarl metarl._cherry")
EOF

# pyproject's addopts hold -m 'not slow': the -m given here replaces it.
run "pytest -m gpu" pytest.txt 180 "$PY" -m pytest -m gpu tests/test_gpu.py -p no:cacheprovider \
    -v -rxXs --durations=10
run "pytest cpu" pytest.txt 120 "$PY" -m pytest tests/test_agents.py tests/test_maml.py \
    tests/test_rollout.py tests/test_device_paths.py -p no:cacheprovider -q -rxXs

if [[ "${GPU_CHECK_QUICK:-0}" == 1 ]]; then
    SIZES=(4 8) EPISODES=2 HORIZON=10 ITERATIONS=2 BUDGET=5
else
    SIZES=(40 160) EPISODES=20 HORIZON=100 ITERATIONS=5 BUDGET=40
fi
for tasks in "${SIZES[@]}"; do
    for agent in maml-trpo promp; do
        extra=()
        [[ $tasks == "${SIZES[0]}" ]] && extra=(--profile "$OUT/profile.txt")
        run "bench $agent $tasks" bench.txt 150 "$PY" scripts/bench_train.py \
            --env metarl/HalfCheetahDir-v0 --agent "$agent" --tasks "$tasks" \
            --episodes "$EPISODES" --horizon "$HORIZON" --iterations "$ITERATIONS" --warmup 1 \
            --budget "$BUDGET" --threads "$CPUS" --mujoco-threads "$CPUS" --devices cuda cpu \
            --json "$OUT/bench.jsonl" "${extra[@]}"
    done
done

run summary bench.txt 30 "$PY" - "$OUT/bench.jsonl" <<'EOF'
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{'agent':10s} {'tasks':>5s} {'device':6s} {'sampling':>9s} {'adapt':>7s} {'outer':>7s} "
      f"{'meta':>7s} {'s/iter':>7s} {'n':>2s}  device name")
meta = {}
for r in rows:
    m, c = r["medians"], r["config"]
    meta[c["agent"], c["tasks"], r["device"]] = m["meta_step"]
    print(f"{c['agent']:10s} {c['tasks']:5d} {r['device']:6s} {m['time_sampling']:9.3f} "
          f"{m['time_adaptation']:7.3f} {m['time_outer']:7.3f} {m['meta_step']:7.3f} "
          f"{m['wall']:7.3f} {len(r['iterations']):2d}  {r['device_name']}")
print("meta-step = adaptation + outer step (sampling excluded); medians, seconds")
sizes = sorted({t for _, t, _ in meta})
for (agent, tasks, device), s in sorted(meta.items()):
    if device.startswith("cuda") and tasks == sizes[0]:
        line = f"{agent} {device} meta-step at {tasks} tasks: {s:.3f} s (target <= 0.15 s)"
        big = meta.get((agent, sizes[-1], device))
        if big is not None and len(sizes) > 1:
            line += f"; x{big / s:.2f} at {sizes[-1]} tasks ({sizes[-1] // tasks}x the tasks)"
        cpu = meta.get((agent, tasks, "cpu"))
        if cpu is not None:
            line += f"; CPU/GPU {cpu / s:.1f}x"
        print(line)
EOF

echo "== done in ${SECONDS}s; files in $OUT: $(cd "$OUT" && echo *)"
if ((${#FAILED[@]})); then
    printf '== failed: %s\n' "${FAILED[@]}"
    exit 1
fi

"""Thread count from the cores actually available: affinity, cgroup quota, OMP_NUM_THREADS."""
import os
import subprocess
import sys

import pytest

from camtrap_ssl.core import threads


def fake_cgroup(tmp_path, files: dict, own: str | None = None):
    for rel, text in files.items():
        p = tmp_path / "cg" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(f"0::/{own}\n" if own else "4:memory:/x\n")
    return tmp_path / "cg", proc


@pytest.mark.parametrize("files, own, expected", [
    ({"cpu.max": "max 100000\n"}, None, None),
    ({"cpu.max": "150000 100000\n"}, None, 1.5),
    ({"job/cpu.max": "50000 100000", "cpu.max": "max 100000"}, "job", 0.5),  # own group first
    ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None, None),
    ({"cpu,cpuacct/cpu.cfs_quota_us": "300000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, None, 3.0),
    ({}, None, None),
])
def test_cgroup_quota_v1_and_v2(tmp_path, files, own, expected):
    root, proc = fake_cgroup(tmp_path, files, own)
    assert threads.cgroup_cpu_limit(root, proc) == expected


def test_smallest_limit_wins_and_quota_rounds_up():
    assert threads.available_cpus(affinity={0, 1}, quota=None, cpu_count=64) == 2
    assert threads.available_cpus(affinity=set(range(16)), quota=1.5, cpu_count=64) == 2
    assert threads.available_cpus(affinity=set(range(8)), quota=0.2, cpu_count=8) == 1
    assert threads.available_cpus(affinity=set(range(8)), quota=16.0, cpu_count=8) == 8


@pytest.mark.parametrize("env, expected", [
    ({}, 3), ({"OMP_NUM_THREADS": "1"}, 1), ({"OMP_NUM_THREADS": "12"}, 12),
    ({"OMP_NUM_THREADS": "0"}, 3), ({"OMP_NUM_THREADS": "lots"}, 3), ({"OMP_NUM_THREADS": ""}, 3),
])
def test_omp_num_threads_is_respected_when_valid(env, expected):
    assert threads.choose_threads(env, cpus=3) == expected


def test_openmp_defaults_keep_what_the_user_set():
    env = {}
    assert threads.openmp_defaults(env) == threads.available_cpus()
    assert env == {"OMP_NUM_THREADS": str(threads.available_cpus()), "OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert threads.openmp_defaults(env) == 3 and env["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_cli_sets_openmp_env_before_torch_loads():
    # libgomp reads OMP_* once, when torch loads it: the CLI must set them before that
    code = ("import sys, os; import camtrap_ssl.core.threads; "
            "print('torch' in sys.modules, os.environ['OMP_WAIT_POLICY'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.split() == ["False", "PASSIVE"]
    cli_src = (threads.Path(threads.__file__).parents[1] / "cli.py").read_text()
    first = next(line for line in cli_src.splitlines() if line.startswith("from camtrap_ssl"))
    assert first.startswith("from camtrap_ssl.core import threads")


@pytest.mark.slow
def test_cli_applies_the_choice_in_a_fresh_process():
    code = ("import torch, sys; from camtrap_ssl import cli; cli.main(['models']); "
            "import os; print('THREADS', torch.get_num_threads(), os.environ['OMP_NUM_THREADS'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, timeout=120).stdout
    n = threads.available_cpus()
    assert f"THREADS {n} {n}" in out
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "THREADS 1 1" in out

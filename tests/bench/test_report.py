"""The command a benchmark writes into docs/performance.md names no file of the run."""

from bench.report import portable


def test_paths_in_a_benchmark_command_are_written_as_dir_or_file(tmp_path):
    f = tmp_path / "out.json"
    f.write_text("{}")
    command = f"python -m bench.fleet --agents 10000 --profile-dir {tmp_path} --json-out={f} --window 30"
    assert portable(command) == "python -m bench.fleet --agents 10000 --profile-dir DIR --json-out=FILE --window 30"
    assert portable("python -m bench.storage --machines 100") == "python -m bench.storage --machines 100"

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text("utf-8").splitlines()
    return [ln for ln in lines if ln.startswith("python3 -m venv")]


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2
    assert "qc-pipeline run samples/" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    assert _readme_commands()[1] in ci


def test_readme_sample_inputs_exist():
    for rel in ("samples/calls/manifest.csv", "samples/chats"):
        assert (REPO / rel).exists(), rel


def test_ci_lints_with_ruff_and_the_package_is_typed():
    import tomllib

    ci = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    assert "ruff check ." in ci
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    assert {"F", "I", "B", "C90"} <= set(project["tool"]["ruff"]["lint"]["select"])
    assert any(dep.startswith("ruff==") for dep in project["project"]["optional-dependencies"]["test"])
    assert (REPO / "qc_pipeline" / "py.typed").is_file()

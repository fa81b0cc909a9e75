"""The command line's own behaviour: Ctrl-C, shipped recipes by name."""

import pytest


@pytest.mark.parametrize("argv,says", [
    (["train", "recipes/quickstart.yaml"], "resume with --resume"),
    (["qat", "runs/x", "--target", "xnnpack"], "resume with --resume"),
    (["run", "recipes/quickstart.yaml"], "run the same command again"),
    (["sweep", "recipes/quickstart.yaml"], "run the same command again"),
    (["export", "runs/x", "--target", "onnx"], None),
    (["bench", "a.onnx"], None),
    (["--help"], None),
])
def test_ctrl_c_offers_resume_only_where_a_command_can_resume(monkeypatch, capsys, argv, says):
    import edgecnn.cli as cli_module

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_module, "app", interrupted)
    monkeypatch.setattr("sys.argv", ["edgecnn", *argv])
    with pytest.raises(SystemExit) as e:
        cli_module.main()
    err = capsys.readouterr().err
    assert e.value.code == 130 and err.startswith("interrupted")
    if says:
        assert says in err
    else:
        assert err.strip() == "interrupted" and "resume" not in err


# -- shipped recipes, by name --------------------------------------------------------------------

def test_a_shipped_recipe_is_accepted_by_name_from_any_folder(tmp_path):
    from conftest import cli

    for arg in ("quickstart", "quickstart.yaml", "recipes/quickstart.yaml"):
        proc = cli("validate", arg, "train.epochs=3", cwd=tmp_path)
        assert proc.returncode == 0 and "valid recipe" in proc.stdout and "3 epochs" in proc.stdout, proc.stderr
    proc = cli("info", "quickstart_cnn", cwd=tmp_path)
    assert proc.returncode == 0 and "cnn at 48x48" in proc.stdout, proc.stdout + proc.stderr
    # A file at the path wins over the shipped recipe of that name.
    (tmp_path / "quickstart.yaml").write_text("name: mine\ntrain: {epochs: 7}\n")
    assert "7 epochs" in cli("validate", "quickstart.yaml", cwd=tmp_path, check=True).stdout
    assert "5 epochs" in cli("validate", "quickstart", cwd=tmp_path, check=True).stdout
    # Neither: one line with the names and a "did you mean".
    proc = cli("validate", "quickstar", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "did you mean 'quickstart'?" in proc.stderr and "cnn_attn" in proc.stderr


def test_recipes_lists_each_with_its_first_comment_line():
    from conftest import RECIPES, cli

    out = cli("recipes", check=True).stdout
    for path in sorted(RECIPES.glob("*.yaml")):
        first = next(l for l in path.read_text().splitlines() if l.startswith("#")).lstrip("# ")
        assert any(l.split()[0] == path.stem and l.endswith(first) for l in out.splitlines() if l.strip()), path


def test_recipes_cp_writes_a_copy_to_edit(tmp_path):
    import os
    import stat

    from conftest import RECIPES, cli

    cli("recipes", "cp", "quickstart", str(tmp_path / "mine.yaml"), check=True)
    assert (tmp_path / "mine.yaml").read_bytes() == (RECIPES / "quickstart.yaml").read_bytes()
    assert stat.S_IMODE((tmp_path / "mine.yaml").stat().st_mode) == 0o666 & ~_umask()
    cli("recipes", "cp", "cnn.yaml", str(tmp_path), check=True)  # into a folder, as NAME.yaml
    assert (tmp_path / "cnn.yaml").read_bytes() == (RECIPES / "cnn.yaml").read_bytes()
    for args, says in ((["quickstart", str(tmp_path / "mine.yaml")], "exists; pass another path, or --force"),
                       (["quick", str(tmp_path / "x.yaml")], "did you mean 'quickstart'?")):
        proc = cli("recipes", "cp", *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr
    (tmp_path / "mine.yaml").write_text("edited")
    cli("recipes", "cp", "quickstart", str(tmp_path / "mine.yaml"), "--force", check=True)
    assert (tmp_path / "mine.yaml").read_bytes() == (RECIPES / "quickstart.yaml").read_bytes()
    assert not os.path.exists(tmp_path / "x.yaml")


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_non_editable_install_ships_the_recipes(tmp_path):
    """`pip install .` (not -e) into a fresh virtual environment, then `edgecnn validate quickstart`
    from an empty folder. The dependencies come from the test's own environment (a path entry
    without its .pth hooks, so the editable checkout stays out of sight): quick, and offline."""
    import shutil
    import subprocess
    import sys
    import sysconfig

    from conftest import ROOT

    # Built from a copy, so the build leaves nothing in the checkout (the recipes link copied as a link).
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("edgecnn", "recipes"):
        shutil.copytree(ROOT / name, src / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
         "--no-build-isolation", "--no-index", str(src)],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import edgecnn; print(edgecnn.__file__)"],
                           cwd=empty, capture_output=True, text=True, timeout=60, check=True).stdout
    assert where.startswith(str(site)), where  # the installed copy, not the checkout
    assert (site / "edgecnn" / "recipes" / "quickstart.yaml").is_file()
    assert not (site / "edgecnn" / "recipes").is_symlink()
    proc = subprocess.run([str(venv / "bin" / "edgecnn"), "validate", "quickstart"], cwd=empty,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok: quickstart is a valid recipe" in proc.stdout, proc.stdout + proc.stderr
    listing = subprocess.run([str(venv / "bin" / "edgecnn"), "recipes"], cwd=empty, capture_output=True,
                             text=True, timeout=120, check=True).stdout
    assert "quickstart " in listing and str(site) in listing

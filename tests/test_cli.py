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

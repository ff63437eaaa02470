"""`collagen --self-test` passes in-process (the frozen build's smoke test runs the same code)."""

from desktop.selftest import run_self_test


def test_self_test_passes_every_check(qapp, capsys, user_dirs):
    assert run_self_test() == 0
    out = capsys.readouterr().out
    for check in ("generate", "inpaint", "regions", "project save/load", "png metadata", "editor window"):
        assert f"ok   {check}:" in out
    assert "self-test: 6 passed, 0 failed" in out

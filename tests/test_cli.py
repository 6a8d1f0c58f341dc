import subprocess
import sys

import pytest

from tl_glp import ActivationStore, GenerativePrior
from tl_glp.cli import build_parser, main


@pytest.mark.parametrize("command", ["collect", "train", "steer", "probe", "demo", "bench", "testbed"])
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    actions = [a for a in build_parser()._subparsers._group_actions[0].choices[command]._actions if a.option_strings and a.dest != "help"]
    for action in actions:
        assert action.help, f"{command} {action.option_strings} has no help"
    assert "usage: tl-glp " + command in text


def test_collect_train_steer_on_the_testbed(testbed, tmp_path, capsys):
    hook = "blocks.2.hook_resid_post"
    assert main(["collect", "--hook", hook, "--out", str(tmp_path / "acts"), "--max-tokens", "3000", "--no-progress"]) == 0
    store = ActivationStore.open(tmp_path / "acts")
    assert len(store) == 3000 and store.model_name == "tl-glp-testbed"
    assert main(["train", "--activations", str(tmp_path / "acts"), "--out", str(tmp_path / "run"), "--n-blocks", "1", "--batch-size", "256",
                 "--lr", "1e-3", "--max-steps", "6", "--eval-every", "3", "--checkpoint-every", "3", "--no-progress"]) == 0
    prior = GenerativePrior.from_pretrained(tmp_path / "run")
    assert prior.cfg.hook_names == [hook] and prior.cfg.model_name == "tl-glp-testbed"
    capsys.readouterr()
    assert main(["steer", "--prior", str(tmp_path / "run"), "--prompt", "the dog", "--positive", "it was happy .", "--negative", "it was sad .",
                 "--r", "1.0", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "plain" in out and "prior" in out and "none" in out


def test_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "tl_glp.cli", "bench", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "prior" in done.stdout

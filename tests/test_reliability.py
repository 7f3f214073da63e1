"""One clear line instead of a silent surprise or a long traceback: --resume with nothing to
resume or a folder."""
import re

import pytest
import torch

from conftest import run_script as run
from test_tools import cls_config  # noqa: F401  (the tiny classifier config fixture)


# ----------------------------------------------------------------------------- --resume
def _checkpoint(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': {}, 'meta': {'seed': 5}}, path)
    return path


def test_resume_picks_the_newest_complete_checkpoint_of_a_folder(tmp_path):
    from mmhiri.utils.checkpointing import choose_resume
    run_dir = tmp_path / 'work_dirs' / 'a'
    _checkpoint(run_dir / 'iter_2.pth')
    newest = run_dir / 'iter_4.pth'
    newest.write_bytes(b'cut short')  # what a kill in a plain torch.save leaves
    assert choose_resume(str(run_dir), str(tmp_path / 'w')) == str(run_dir / 'iter_2.pth')
    assert choose_resume(str(run_dir / 'iter_2.pth'), 'unused') == str(run_dir / 'iter_2.pth')


def test_resume_with_nothing_to_resume_stops_and_names_other_runs(tmp_path, capsys):
    from mmhiri.utils.checkpointing import choose_resume
    other = _checkpoint(tmp_path / 'work_dirs' / 'demo' / 'epoch_1.pth')
    typo = tmp_path / 'work_dirs' / 'dmeo'
    with pytest.raises(SystemExit) as e:
        choose_resume('auto', str(typo))
    assert e.value.code == (
        f"--resume: nothing to resume in '{typo}' (no such folder); checkpoints of other runs: "
        f'{other}. Pass --resume PATH (a checkpoint or a folder of them), or add '
        '--allow-fresh-start to start a new run when there is nothing to resume')
    typo.mkdir()
    with pytest.raises(SystemExit, match=r"in '.*dmeo' \(no checkpoint in it\)"):
        choose_resume(str(typo), 'unused')
    (typo / 'epoch_1.pth').write_bytes(b'')
    with pytest.raises(SystemExit, match=r'\(1 incomplete checkpoint\(s\), no complete one\)'):
        choose_resume('auto', str(typo))
    assert choose_resume('auto', str(typo), allow_fresh=True) is None
    assert 'starting a new run (--allow-fresh-start)' in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--resume: checkpoint not found: 'nope.pth'"):
        choose_resume('nope.pth', str(typo))


@pytest.mark.slow
def test_resume_from_the_command_line(cls_config, tmp_path):  # noqa: F811
    """tools/train.py: --resume into an empty work dir stops (it trained from scratch, exit
    0); --resume FOLDER resumes from the newest checkpoint in it (it was 'checkpoint not
    found'); --allow-fresh-start starts a new run when there is nothing to resume."""
    first = tmp_path / 'runs' / 'first'
    run('tools/train.py', str(cls_config), '--work-dir', str(first))
    empty = tmp_path / 'runs' / 'empty'
    out = run('tools/train.py', str(cls_config), '--work-dir', str(empty), '--resume',
              check=False)
    assert out.returncode != 0 and 'Traceback' not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"--resume: nothing to resume in '{empty}' (no such folder); checkpoints of other runs: "
        f"{first / 'iter_2.pth'}. Pass --resume PATH (a checkpoint or a folder of them), or add "
        '--allow-fresh-start to start a new run when there is nothing to resume')
    assert not empty.exists()
    out = run('tools/train.py', str(cls_config), '--work-dir', str(tmp_path / 'more'),
              '--resume', str(first), '--cfg-options', 'train_cfg.max_iters=3')
    assert f'--resume: resuming from {first / "iter_2.pth"}' in out.stderr
    assert re.search(r'resumed epoch: \d+, iter: 2', out.stdout + out.stderr)
    assert (tmp_path / 'more' / 'iter_3.pth').is_file()
    out = run('tools/train.py', str(cls_config), '--work-dir', str(empty), '--resume',
              '--allow-fresh-start', '--cfg-options', 'train_cfg.max_iters=1')
    assert 'starting a new run (--allow-fresh-start)' in out.stderr
    assert (empty / 'iter_1.pth').is_file()

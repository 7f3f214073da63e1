"""Checkpoints that a hard kill cannot take away.

mmengine's ``CheckpointHook`` deletes the checkpoint that ``max_keep_ckpts`` lets go *before*
writing the new one, writes the new one in place, then points ``last_checkpoint`` at it: a kill
during the write leaves a truncated newest file, no older one, and a ``last_checkpoint`` that
names the broken file. :class:`SafeCheckpointHook` writes to a temporary name, renames it into
place (atomic on one file system), then updates ``last_checkpoint`` the same way, and only
then prunes. :func:`find_resumable` is what ``--resume`` without a path (or with a folder) uses:
the newest checkpoint in the folder that is complete, naming the ones it skipped;
:func:`choose_resume` turns ``--resume`` into the checkpoint to load, and stops when there is
nothing to resume rather than starting a new run unasked.
"""
import glob
import os
import os.path as osp
import re
import sys
import zipfile
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS


def atomic_write_text(path: str, text: str) -> None:
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with crash-safe saving: write to ``.<name>.tmp``, rename, point
    ``last_checkpoint`` at it (also by rename), then prune beyond ``max_keep_ckpts``. Same
    arguments and files as ``CheckpointHook``; ``tools/train.py`` uses it in its place."""

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not isinstance(self.file_backend, LocalBackend):  # remote: no rename to rely on
            return super()._save_checkpoint_with_step(runner, step, meta)
        prune = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                prune.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        name = self.filename_tmpl.format(step)
        tmp_name = f'.{name}.tmp'
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, tmp_name, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        os.replace(osp.join(self.out_dir, tmp_name), self.last_ckpt)
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        for old in prune:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)


def is_complete_checkpoint(path: str) -> Tuple[bool, str]:
    """(ok, reason): a torch checkpoint is a zip archive whose directory sits at its end, so a
    file cut short by a kill fails to open without reading its tensors."""
    if not osp.isfile(path):
        return False, 'missing'
    if osp.getsize(path) == 0:
        return False, 'empty'
    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith('data.pkl') for n in z.namelist()):
                return False, 'not a torch checkpoint'
    except (zipfile.BadZipFile, OSError) as e:
        return False, f'truncated or corrupt ({e})'
    return True, ''


def _step(path: str) -> int:
    m = re.search(r'(\d+)\.pth$', osp.basename(path))
    return int(m.group(1)) if m else -1


def find_resumable(work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The newest complete checkpoint in ``work_dir`` (the one ``last_checkpoint`` names
    first, then ``*.pth`` newest first) and the ones skipped, each with its reason."""
    candidates = []
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if named:
            candidates.append(named if osp.isabs(named) else osp.join(work_dir, named))
    found = [p for p in glob.glob(osp.join(work_dir, '*.pth')) if osp.isfile(p)]
    found.sort(key=lambda p: (osp.getmtime(p), _step(p)), reverse=True)
    candidates += [p for p in found if p not in candidates]
    skipped = []
    for path in candidates:
        ok, why = is_complete_checkpoint(path)
        if ok:
            return path, skipped
        skipped.append(f'{path} ({why})')
    return None, skipped


def checkpoints_elsewhere(folder: str, limit: int = 3) -> List[str]:
    """The newest complete checkpoint of each other run next to ``folder`` (its sibling
    folders; newest first), then of those under ``./work_dirs``; at most ``limit``."""
    folder = osp.abspath(folder)
    parent = osp.dirname(folder)
    roots = {parent, osp.abspath('work_dirs')}
    runs = {osp.join(r, d) for r in roots if osp.isdir(r) for d in os.listdir(r)}
    found = []
    for run in sorted(runs - {folder}):
        if osp.isdir(run) and (osp.isfile(osp.join(run, 'last_checkpoint'))
                               or glob.glob(osp.join(run, '*.pth'))):
            ckpt, _ = find_resumable(run)
            if ckpt:
                found.append((osp.dirname(run) != parent, -osp.getmtime(ckpt), ckpt))
    paths = [ckpt for *_, ckpt in sorted(found)[:limit]]
    return [osp.relpath(p) if not osp.relpath(p).startswith('..') else p for p in paths]


def choose_resume(resume: str, work_dir: str, allow_fresh: bool = False) -> Optional[str]:
    """The checkpoint ``--resume`` means: ``'auto'`` (no value) the newest complete one in
    ``work_dir``, a folder the newest complete one in it, else the file itself.

    Stops with one line when there is nothing to resume (naming the checkpoints of other runs
    next to it, if any), unless ``allow_fresh``: then returns None (a new run)."""
    if resume != 'auto' and not osp.isdir(resume):
        if not osp.isfile(resume):
            raise SystemExit(f'--resume: checkpoint not found: {resume!r}')
        return resume
    folder = work_dir if resume == 'auto' else resume
    found, skipped = find_resumable(folder)
    for s in skipped:
        print(f'--resume: skipping {s}', file=sys.stderr)
    if found:
        print(f'--resume: resuming from {found}', file=sys.stderr)
        return found
    why = 'no such folder' if not osp.isdir(folder) else \
        f'{len(skipped)} incomplete checkpoint(s), no complete one' if skipped else \
        'no checkpoint in it'
    if allow_fresh:
        print(f'--resume: nothing to resume in {folder!r} ({why}); starting a new run '
              '(--allow-fresh-start)', file=sys.stderr)
        return None
    others = checkpoints_elsewhere(folder)
    raise SystemExit(
        f'--resume: nothing to resume in {folder!r} ({why}); '
        + (f'checkpoints of other runs: {", ".join(others)}. ' if others else '')
        + 'Pass --resume PATH (a checkpoint or a folder of them), or add --allow-fresh-start '
        'to start a new run when there is nothing to resume')

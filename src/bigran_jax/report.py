"""What a run leaves in its workdir besides checkpoints: `config.json`, `metrics.jsonl` (one JSON
line per log step and per evaluation), `results.json` (the last evaluation), `report.md` (numbers
and figures), TensorBoard event files, and a sweep's `summary.md` across members."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

from bigran_jax.util import atomic_write, dotted_get


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic | np.ndarray) or hasattr(x, 'tolist'):
        return np.asarray(x).tolist()
    return x


def write_json(path: str, obj) -> str:
    """Writes atomically, so a crash never leaves half a file where a good one was."""
    with atomic_write(path) as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=True)
        f.write('\n')
    return path


def code_version() -> dict:
    """The package version, and the git commit of the checkout the package runs from (with
    whether it had uncommitted changes) when there is one."""
    from bigran_jax import __version__

    out: dict[str, str | bool] = {'version': __version__}
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        run = lambda *args: subprocess.run(['git', *args], cwd=here, capture_output=True,
                                           text=True, timeout=10, check=True).stdout.strip()
        out['git_commit'] = run('rev-parse', 'HEAD')
        out['git_dirty'] = bool(run('status', '--porcelain', '--untracked-files=no'))
    except (OSError, subprocess.SubprocessError):
        pass  # an installed package, or no git: the version says what ran
    return out


def machine() -> dict:
    """What besides the code and config sets a run's numbers on a CPU (docs/usage.md,
    "Reproducibility"): the CPUs the process may use, which size XLA's thread pool; the CPU; the
    platform and the versions of jax and jaxlib."""
    import jax
    import jaxlib

    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 0
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next((line.split(':', 1)[1].strip() for line in f
                          if line.startswith('model name')), model)
    except OSError:
        pass
    return {'cpus_usable': cpus, 'cpu': model, 'platform': jax.default_backend(),
            'devices': jax.device_count(), 'jax': jax.__version__, 'jaxlib': jaxlib.__version__}


def provenance(config, data: str | None = None) -> dict:
    """What produced a result: the code (version, git commit), the command line, the machine
    (`machine`), the data source and the whole config. The judge is named beside the metrics it
    measured."""
    out = {'code': code_version(), 'command': ' '.join([sys.executable, *sys.argv]),
           'machine': machine(), 'config': config.to_dict()}
    if data is not None:
        out['data'] = data
    return out


def append_jsonl(path: str, row: dict) -> None:
    with open(path, 'a') as f:
        f.write(json.dumps(_jsonable(row), sort_keys=True) + '\n')


class TensorBoard:
    """tensorboardX scalars and images (no TensorFlow needed); inactive off process 0."""

    def __init__(self, logdir: str, active: bool):
        self._writer = None
        if active:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(logdir)

    def scalars(self, step: int, values: dict, prefix: str = '') -> None:
        if self._writer:
            for name, v in values.items():
                if np.ndim(v) == 0:
                    self._writer.add_scalar(prefix + name, float(v), step)

    def image(self, step: int, name: str, image_u8: np.ndarray) -> None:
        if self._writer:
            self._writer.add_image(name, image_u8, step,
                                   dataformats='HWC' if image_u8.ndim == 3 else 'HW')

    def close(self) -> None:
        if self._writer:
            self._writer.close()


def scalars(results: dict, prefix: str = '') -> list[tuple[str, object]]:
    rows = []
    for k, v in results.items():
        if isinstance(v, dict):
            rows += scalars(v, f'{prefix}{k}.')
        elif isinstance(v, int | float) and not isinstance(v, bool):
            rows.append((prefix + k, v))
    return rows


def write_report(workdir: str, title: str, results: dict, figures: list, extra: str = '') -> str:
    """`report.md`: the scalar results as a table, any text block, and the figures."""
    lines = [f'# {title}', '', f'Written {time.strftime("%Y-%m-%d %H:%M:%S")}.', '',
             '| metric | value |', '| --- | --- |']
    lines += [f'| {k} | {v:.6g} |' if isinstance(v, float) else f'| {k} | {v} |'
              for k, v in scalars(results)]
    if extra:
        lines += ['', '```', extra, '```']
    lines += [''] + [f'![{os.path.basename(f)}]({os.path.relpath(f, workdir)})' for f in figures]
    path = os.path.join(workdir, 'report.md')
    with atomic_write(path) as f:
        f.write('\n'.join(lines) + '\n')
    return path


def read_results(workdir: str) -> dict | None:
    """The `results.json` a run's last evaluation wrote in `workdir`, or None when there is none."""
    path = os.path.join(workdir, 'results.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def named_workdirs(items: list[str]) -> dict:
    """Command-line runs `DIR` or `NAME=DIR` -> `{name: workdir}`. An item that exists as a path
    is a bare DIR (sweep members' names hold '=', as `k=4_seed=0`), named by its last component;
    otherwise NAME is the text before the first '='."""
    runs = {}
    for item in items:
        if os.path.exists(item) or '=' not in item:
            runs[os.path.basename(os.path.normpath(item))] = item
        else:
            name, _, path = item.partition('=')
            runs[name] = path
    return runs


def _cell(v) -> str:
    if isinstance(v, list) and all(isinstance(x, float) for x in v):
        return ', '.join(f'{x:.0f}' if abs(x) >= 10 else f'{x:.3g}' for x in v)
    return f'{v:.4g}' if isinstance(v, float) else '-' if v is None else str(v)


def summarize(workdirs: dict, columns: list[str]) -> str:
    """A Markdown table over sweep members: `workdirs` maps a member's name to its workdir; each
    column is a dotted key into that member's `results.json` (missing values shown as '-')."""
    header = '| member | ' + ' | '.join(columns) + ' |'
    lines = [header, '|' + ' --- |' * (len(columns) + 1)]
    for name, wd in workdirs.items():
        res = read_results(wd) or {}
        cells = [_cell(dotted_get(res, col)) for col in columns]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)

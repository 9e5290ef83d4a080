"""The documentation runs and its links hold.

Every ```python block of README.md and docs/*.md runs: the blocks of one file in order, in one
namespace, in a fresh process (JAX_PLATFORMS=cpu) whose working directory is an empty temporary
folder. Commands that need full MNIST, the network or minutes of training belong in ```bash or
```text blocks, which are not run. The README stays a short front door (at most 250 lines), and
every relative link of README.md and docs/*.md points to a file that exists (and, for a link to
a heading of a Markdown page, to a heading that exists).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
README_MAX_LINES = 250

FENCE = re.compile(r'^(```+|~~~+)\s*([\w+-]*)')
LINK = re.compile(r'!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def split_fences(text: str) -> tuple[list[tuple[str, int, str]], list[tuple[int, str]]]:
    """`(blocks, prose)`: each fenced block as (language, first line number, source), and every
    line outside the fences as (line number, text)."""
    blocks, prose = [], []
    fence, lang, start, body = None, '', 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if fence is None:
            m = FENCE.match(line.strip())
            if m:
                fence, lang, start, body = m.group(1), m.group(2).lower(), number + 1, []
            else:
                prose.append((number, line))
        elif line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            blocks.append((lang, start, '\n'.join(body) + '\n'))
            fence = None
        else:
            body.append(line)
    assert fence is None, f'unclosed code fence opened before line {start}'
    return blocks, prose


def python_blocks(path: Path) -> list[tuple[int, str]]:
    blocks, _ = split_fences(path.read_text())
    return [(line, src) for lang, line, src in blocks if lang in ('python', 'py')]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces as
    hyphens."""
    text = re.sub(r'!?\[([^\]]*)\]\([^)]*\)', r'\1', heading)  # a link's text
    text = text.replace('`', '').replace('*', '').strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path: Path) -> set[str]:
    _, prose = split_fences(path.read_text())
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose:
        m = re.match(r'^#{1,6}\s+(.*?)\s*#*\s*$', line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f'{base}-{n}')
    return out


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of each inline link or image outside code."""
    _, prose = split_fences(path.read_text())
    out = []
    for number, line in prose:
        line = re.sub(r'`[^`]*`', '', line)  # code spans hold no links
        out += [(number, m.group(1)) for m in LINK.finditer(line)]
    # A link whose text wraps onto the next line: join each paragraph's lines and look again.
    text = '\n'.join(re.sub(r'`[^`]*`', '', line) for _, line in prose)
    for m in LINK.finditer(text):
        if '\n' in m.group(0):
            out.append((text.count('\n', 0, m.start()) + 1, m.group(1)))
    return out


RUNNER = r'''
import sys, traceback
namespace = {'__name__': '__main__'}
for label, src in BLOCKS:
    try:
        exec(compile(src, label, 'exec'), namespace)
    except BaseException:
        traceback.print_exc()
        print(f'FAILED in {label}', file=sys.stderr)
        sys.exit(1)
'''


def test_readme_is_short():
    lines = (ROOT / 'README.md').read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f'README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/')


def test_readme_has_the_pretrained_snippet():
    assert any('pretrained.load()' in src for _, src in python_blocks(ROOT / 'README.md'))


@pytest.mark.parametrize('page', PAGES, ids=_rel)
def test_relative_links_point_to_existing_files(page):
    broken = []
    for number, target in links(page):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
            continue
        file, _, anchor = target.partition('#')
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f'{_rel(page)}:{number}: {target} (no such file)')
        elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
            broken.append(f'{_rel(page)}:{number}: {target} (no such heading in {dest.name})')
    assert not broken, '\n'.join(broken)


@pytest.mark.parametrize('page', [p for p in PAGES if python_blocks(p)], ids=_rel)
def test_python_blocks_run(page, tmp_path):
    blocks = [(f'{_rel(page)}, block at line {line}', src) for line, src in python_blocks(page)]
    script = tmp_path / 'run_blocks.py'
    script.write_text(f'BLOCKS = {blocks!r}\n{RUNNER}')
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, JAX_PLATFORMS='cpu', BIGRAN_CACHE=str(tmp_path / 'cache'),
               MPLBACKEND='Agg')
    done = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f'{_rel(page)}:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}'

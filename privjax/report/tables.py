"""Reports of privacy evaluations: report.json, the paper-style report.md, and comparison tables.

What lives here: writing one run's report files, and the side-by-side table of several runs
(`compare`). Every number comes from a report dict produced by privjax.evaluate; nothing here
computes a metric. Must not import jax or privjax.attacks.
"""

from __future__ import annotations

import json
import math

import numpy as np

from privjax import paths as paths_lib


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f'not JSON serialisable: {type(x)}')


def _clean(x):
  """JSON has no inf/nan: they become strings, so the file stays valid JSON."""
  if isinstance(x, dict):
    return {k: _clean(v) for k, v in x.items() if not str(k).startswith('_')}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, (float, np.floating)) and not math.isfinite(float(x)):
    return str(float(x))
  return x


def pct(x) -> str:
  return '—' if x is None else f'{100 * float(x):.1f}'


def num(x, digits=3) -> str:
  return '—' if x is None else f'{float(x):.{digits}g}'


def pct_se(x, se=None) -> str:
  """An accuracy in % with its standard error: `36.3 ± 1.2` (reports without one: `36.3`)."""
  return pct(x) if x is None or se is None else f'{pct(x)} ± {pct(se)}'


def _top(a, k='top1') -> str:
  return pct_se(a.get(k), a.get(f'{k}_se'))


def _family_label(fam: str, r: dict) -> str:
  """The family, with its own PCA choice and an L-BFGS fit that stopped at its cap."""
  notes = []
  if 'pca_k' in r:
    notes.append(f'PCA-{r["pca_k"]}{", whitened" if r.get("whiten") else ""}')
  if r.get('converged') is False:
    notes.append(f'**not converged**: L-BFGS stopped at its cap, {r.get("iterations")} iterations')
  return f'{fam} ({"; ".join(notes)})' if notes else fam


def _baseline(report) -> dict:
  """The untransformed, noiseless entry of the sweep (what the cloud gets without PCA or noise)."""
  for entry in report['sweep']:
    if entry['transform'] == 'none' and entry['noise_variance'] == 0:
      return entry
  return report['sweep'][0]


def sweep_table(report) -> list[str]:
  secrets = report['secrets']
  head = [
      'transform',
      'noise σ²',
      'upload dims',
      f'{report["primary"]} acc (head)',
      f'{report["primary"]} acc (probe)',
  ]
  for s in secrets:
    head += [f'{s} top-1 (strongest)', f'{s} top-5']
  head += ['mean norm. rank', 'ranked first', 'norm. log-rank']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for e in report['sweep']:
    row = [
        e['transform'],
        num(e['noise_variance']),
        str(e['uploaded_dims']),
        pct(e.get('primary_head_accuracy')),
        pct(e.get('primary_probe', {}).get('top1')),
    ]
    for s in secrets:
      # Absent: not attacked at this setting (primary_secret_sweep), or no attackers evaluator.
      a = e.get('attacks', {}).get(s)
      row += [f'{_top(a)} ({a["strongest"]})', _top(a, 'top5')] if a else ['—', '—']
    rp = e.get('rank_privacy')
    row += (
        [num(rp['mean_normalized_rank']), pct(rp['fraction_first']), num(rp['normalized_log_rank'])]
        if rp
        else ['—'] * 3
    )
    lines.append('| ' + ' | '.join(row) + ' |')
  return lines


def families_table(report) -> list[str]:
  base = _baseline(report)
  lines = [
      '| secret | attacker | top-1 | top-5 | norm. log-rank | train s |',
      '|---|---|---|---|---|---|',
  ]
  for s in report['secrets']:
    a = base.get('attacks', {}).get(s)
    if a is None:  # the attackers evaluator did not run
      continue
    for fam, r in a['families'].items():
      mark = ' **(strongest)**' if fam == a['strongest'] else ''
      lines.append(
          f'| {s} | {_family_label(fam, r)}{mark} | {_top(r)} | {_top(r, "top5")} | '
          f'{num(r.get("log_rank"))} | {num(r["train_seconds"], 2)} |'
      )
    lines.append(f'| {s} | chance | {pct(a["chance_top1"])} | {pct(a["chance_top5"])} | | |')
    lines.append(f'| {s} | majority class | {pct(a.get("majority_top1"))} | | | |')
    for name in ('pixel_reference', 'reference_run'):
      ref = report.get(name, {}).get(s)
      if ref:
        label = (
            'raw pixels' if name == 'pixel_reference' else f'{report[name]["mode"]} run features'
        )
        lines.append(
            f'| {s} | {label} (strongest: {ref["strongest"]}) | {_top(ref)} | '
            f'{_top(ref, "top5")} | | |'
        )
  return lines


def _attack_records(report):
  """(where, secret, record) for every attack record in a report."""
  for e in report['sweep']:
    where = f'{e["transform"]}, noise σ² {num(e["noise_variance"])}'
    for s, a in e.get('attacks', {}).items():
      yield where, s, a
    if 'primary_probe' in e:
      yield where, f'{report["primary"]} probe', {'families': {'linear': e['primary_probe']}}
  for name, label in (('pixel_reference', 'raw pixels'), ('reference_run', 'reference run')):
    for s, a in (report.get(name) or {}).items():
      if isinstance(a, dict) and 'families' in a:
        yield label, s, a


def convergence_lines(report) -> list[str]:
  """One line per attacker fit whose L-BFGS stopped at its iteration cap (none: no lines)."""
  lines = []
  for where, s, a in _attack_records(report):
    for fam, r in a['families'].items():
      if r.get('converged') is False:
        lines.append(
            f'- {s}, {fam} ({where}): stopped at {r.get("iterations")} iterations '
            f'(max_iter {r.get("max_iter", "?")}) without converging'
        )
  return lines


def stats_lines(report) -> list[str]:
  fs = report['feature_stats']
  lines = ['| quantity | mean | median | p5 | p95 |', '|---|---|---|---|---|']
  for key, label in (
      ('norm', 'feature norm'),
      ('dist_same', f'distance, same {report["primary"]}'),
      ('dist_diff', f'distance, different {report["primary"]}'),
  ):
    d = fs.get(key) or {}
    lines.append(
        f'| {label} | {num(d.get("mean"))} | {num(d.get("median"))} | {num(d.get("p5"))} '
        f'| {num(d.get("p95"))} |'
    )
  return lines


# Report keys that the sections above render (the evaluators that were there before plug-ins); every
# other evaluator's results are rendered generically by `evaluator_sections`.
RENDERED_KEYS = frozenset(
    {
        'primary_head_accuracy',
        'primary_probe',
        'attacks',
        'rank_privacy',
        'pixel_reference',
        'reference_run',
        'reconstruction',
    }
)


def _cell(v) -> str:
  if isinstance(v, bool) or v is None or isinstance(v, str):
    return str(v)
  if isinstance(v, (int, np.integer)):
    return str(int(v))
  if isinstance(v, (float, np.floating)):
    return num(v, 4)
  if isinstance(v, (list, tuple)):
    return ', '.join(_cell(x) for x in v) if len(v) <= 8 else f'[{len(v)} values]'
  return str(v)


def flat_results(tree, prefix: str = '') -> list[tuple[str, str]]:
  """(dotted path, cell) for the leaves of one evaluator's results; `x` and `x_se` side by side
  become one cell `x ± x_se`; keys starting with '_' are internal and skipped."""
  if not isinstance(tree, dict):
    return [(prefix, _cell(tree))]
  out = []
  for k, v in tree.items():
    k = str(k)
    if k.startswith('_') or (k.endswith('_se') and k[:-3] in tree):
      continue
    path = f'{prefix}.{k}' if prefix else k
    if isinstance(v, dict):
      out += flat_results(v, path)
    elif f'{k}_se' in tree and not isinstance(v, (dict, list, tuple, str)):
      out.append((path, f'{_cell(v)} ± {_cell(tree[f"{k}_se"])}'))
    else:
      out.append((path, _cell(v)))
  return out


def evaluator_sections(report) -> list[str]:
  """A section per evaluator whose results no table above renders (report['evaluators']): a table
  of its results, with a column per setting of the sweep for those that run per setting."""
  lines = []
  for name, info in (report.get('evaluators') or {}).items():
    keys = [k for k in info.get('keys', []) if k not in RENDERED_KEYS]
    if not keys:
      continue
    lines += ['', f'## Evaluator `{name}`', '']
    if info.get('settings') == 'once':
      lines += ['| result | value |', '|---|---|']
      for k in keys:
        lines += [f'| {path} | {cell} |' for path, cell in flat_results(report.get(k), k)]
      continue
    entries = [e for e in report['sweep'] if any(k in e for k in keys)]
    cols = [f'{e["transform"]}, σ² {num(e["noise_variance"])}' for e in entries]
    rows: dict[str, list[str]] = {}
    for i, e in enumerate(entries):
      for k in keys:
        if k in e:
          for path, cell in flat_results(e[k], k):
            rows.setdefault(path, ['—'] * len(entries))[i] = cell
    lines += ['| result | ' + ' | '.join(cols) + ' |', '|---|' + '---|' * len(cols)]
    lines += [f'| {path} | ' + ' | '.join(cells) + ' |' for path, cells in rows.items()]
  return lines


def markdown(report) -> str:
  lines = [
      f'# Privacy evaluation: `{report["workdir"]}`',
      '',
      f'{report["arch"]} cut at **{report["cut"]}**, mode **{report["mode"]}**, checkpoint '
      f'step {report["step"]}, contrastive margin {num(report["margin"], 4)}; primary task '
      f'**{report["primary"]}**, full-model test accuracy '
      f'{pct(report["primary_accuracy_full_model"])}%. Accuracies in %, attackers\' with their '
      f'binomial standard error over the attacker-test examples (± se; test-set sampling only, '
      f'not run-to-run variation); chance is uniform guessing, majority class the best constant '
      f'guess.',
      '',
      '## Utility and privacy over the transform and noise sweep',
      '',
  ]
  lines += sweep_table(report)
  lines += [
      '',
      '## Attackers on the uploaded features (no PCA, no noise)',
      '',
      "Norm. log-rank: the mean log of the true class's rank among the attacker's classes, over "
      "log(classes) (0: always ranked first; higher = more private). PCA-k: the attacker's own "
      'PCA, chosen on its validation split.',
      '',
  ]
  lines += families_table(report)
  capped = convergence_lines(report)
  if capped:
    lines += [
        '',
        '**Not converged.** These linear-attacker fits hit their L-BFGS iteration cap (the '
        "attacker override `max_iter`); their accuracies may be below the attacker's optimum:",
        '',
        *capped,
    ]
  lines += ['', f'## Cut features on the test split ({report["feature_stats"]["dims"]} dims)', '']
  lines += stats_lines(report)
  rec = report.get('reconstruction')
  if rec:
    lines += [
        '',
        '## Reconstruction attack',
        '',
        f'Decoder trained on attacker-train features → images; on attacker-test: '
        f'PSNR {num(rec["psnr"], 4)} dB, SSIM {num(rec["ssim"], 3)}. '
        f'Originals (top) and reconstructions (bottom): ![grid]({rec["grid"]})',
    ]
  inv = report.get('inversion')
  if inv:
    dec = inv.get('decoder')
    beside = (
        f'; the decoder on the same images: PSNR {num(dec["psnr"], 4)} dB, SSIM '
        f'{num(dec["ssim"], 3)}'
        if dec
        else ''
    )
    lines += [
        '',
        f'White-box inversion (rMLE, {inv["steps"]} steps, TV weight {num(inv["tv_weight"])}) of '
        f'{inv["num_images"]} attacker-test images through the extractor ({inv["transform"]}, '
        f'noise σ² {num(inv["noise_variance"])}): PSNR {num(inv["psnr"], 4)} dB, SSIM '
        f'{num(inv["ssim"], 3)}{beside}; the attacker\'s mean image: PSNR '
        f'{num(inv["mean_image"]["psnr"], 4)} dB. Originals, decoder, rMLE: '
        f'![grid]({inv["grid"]})',
    ]
  lines += evaluator_sections(report)
  lines += ['', f'Evaluation took {num(report["seconds"], 3)} s.', '']
  return '\n'.join(lines)


def write_report(report: dict, out_dir: str, plot_fn=None) -> dict[str, str]:
  """report.json, report.md (and `plot_fn`'s plots) in `out_dir`, a local folder or a URI."""
  paths_lib.as_path(out_dir).mkdir(parents=True, exist_ok=True)
  paths = {
      'json': paths_lib.join(out_dir, 'report.json'),
      'md': paths_lib.join(out_dir, 'report.md'),
  }
  text = json.dumps(_clean(report), indent=2, default=_json_default, allow_nan=False)
  # Atomically: a kill or a full disk in the middle leaves the previous report, not a part.
  paths_lib.write_atomic(paths['json'], text)
  paths_lib.write_atomic(paths['md'], markdown(report))
  if plot_fn:
    paths.update(plot_fn([report], out_dir))
  return paths


def load_report(path: str) -> dict:
  """The report at `path`: a report.json, a report folder or a run (its default evaluation)."""
  if paths_lib.as_path(path).is_dir():
    candidates = [
        paths_lib.join(path, 'report.json'),
        paths_lib.join(path, 'eval', 'default', 'report.json'),
    ]
    path = next((p for p in candidates if paths_lib.as_path(p).exists()), candidates[-1])
  if not paths_lib.as_path(path).exists():
    raise FileNotFoundError(f'no report at {path}; run eval.py on that run first')
  return json.loads(paths_lib.as_path(path).read_text())


def _strongest_cell(a) -> str:
  se = a.get('top1_se')
  se_text = '' if se is None else f' ± {pct(se)}'
  return f'**{pct(a["top1"])}**{se_text} ({a["strongest"]})'


def compare_markdown(reports: list[dict], names: list[str]) -> str:
  """Runs side by side at the untransformed, noiseless setting, plus each run's noisiest setting."""
  rows = []

  def add(label, fn):
    vals = []
    for r in reports:
      try:
        vals.append(fn(r))
      except (KeyError, TypeError, StopIteration):
        vals.append('—')
    rows.append(f'| {label} | ' + ' | '.join(vals) + ' |')

  add('mode / cut', lambda r: f'{r["mode"]} / {r["cut"]}')
  add('margin', lambda r: num(r['margin'], 4))
  add(
      f'{reports[0]["primary"]} accuracy (full model)',
      lambda r: pct(r['primary_accuracy_full_model']),
  )
  for s in reports[0]['secrets']:
    fams = list(_baseline(reports[0])['attacks'][s]['families'])
    for fam in fams:
      add(
          f'{s} top-1 / top-5, {fam}',
          lambda r, s=s, fam=fam: (
              f'{_top(_baseline(r)["attacks"][s]["families"][fam])} / '
              f'{_top(_baseline(r)["attacks"][s]["families"][fam], "top5")}'
          ),
      )
    add(
        f'**{s} top-1, strongest**',
        lambda r, s=s: _strongest_cell(_baseline(r)['attacks'][s]),
    )
    add(f'{s} top-1, raw pixels', lambda r, s=s: _top(r['pixel_reference'][s]))
    add(f'{s} chance', lambda r, s=s: pct(_baseline(r)['attacks'][s]['chance_top1']))
    add(
        f'{s} majority class',
        lambda r, s=s: pct(_baseline(r)['attacks'][s].get('majority_top1')),
    )
  add('feature norm (median)', lambda r: num(r['feature_stats']['norm']['median']))
  add(
      'distance same / different (median)',
      lambda r: (
          f'{num(r["feature_stats"]["dist_same"]["median"])} / '
          f'{num(r["feature_stats"]["dist_diff"]["median"])}'
      ),
  )

  def noisiest(r):
    return max(
        (e for e in r['sweep'] if e['transform'] == 'none'), key=lambda e: e['noise_variance']
    )

  add('largest noise σ² (no PCA)', lambda r: num(noisiest(r)['noise_variance']))
  add(
      f'  {reports[0]["primary"]} accuracy (head)',
      lambda r: pct(noisiest(r)['primary_head_accuracy']),
  )
  for s in reports[0]['secrets']:
    add(f'  {s} top-1, strongest', lambda r, s=s: _top(noisiest(r)['attacks'][s]))
  add(
      '  rank privacy: mean normalised rank',
      lambda r: num(noisiest(r)['rank_privacy']['mean_normalized_rank']),
  )
  add('  rank privacy: ranked first', lambda r: pct(noisiest(r)['rank_privacy']['fraction_first']))
  add(
      'reconstruction PSNR (dB) / SSIM',
      lambda r: (f'{num(r["reconstruction"]["psnr"], 4)} / {num(r["reconstruction"]["ssim"], 3)}'),
  )
  add(
      'rMLE PSNR (dB) / SSIM (decoder on the same images)',
      lambda r: (
          f'{num(r["inversion"]["psnr"], 4)} / {num(r["inversion"]["ssim"], 3)} '
          f'({num(r["inversion"]["decoder"]["psnr"], 4)} / '
          f'{num(r["inversion"]["decoder"]["ssim"], 3)})'
      ),
  )
  add(
      're-identification top-1: originals / decoder / rMLE',
      lambda r: ' / '.join(
          [_top(r['reidentify']['originals'])]
          + [
              _top(r['reidentify']['methods'][m]) if m in r['reidentify']['methods'] else '—'
              for m in ('decoder', 'inversion')
          ]
      ),
  )

  def open_set_cell(r):
    o = _baseline(r)['open_set']
    tar = o['tar_at_far']['0.001']
    return (
        f'{pct_se(tar["tar"], tar["tar_se"])} / {pct_se(o["gallery_top1"], o["gallery_top1_se"])}'
    )

  add('open set: TAR@FAR 1e-3 / gallery top-1', open_set_cell)
  header = ['| | ' + ' | '.join(names) + ' |', '|---|' + '---|' * len(names)]
  return '\n'.join(header + rows) + '\n'

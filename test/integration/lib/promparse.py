#!/usr/bin/env python3
"""promparse.py: a strict reader of the Prometheus text exposition format
0.0.4, for the admin tests. Stricter than Prometheus itself: every line is
a HELP or TYPE comment or a valid sample (no blank lines, no other
comments), every family has one TYPE line before its samples, a family's
samples are together, no series appears twice, counters are not negative,
and each histogram series has buckets in increasing le order with
cumulative counts, ending with le="+Inf" equal to its _count, and a _sum.

  promparse.py check FILE              exit 0 when valid, else print each problem
  promparse.py value FILE NAME [k=v].. print the value of the one sample that
                                       has NAME and exactly those labels
"""
import math
import re
import sys

NAME = r'[a-zA-Z_:][a-zA-Z0-9_:]*'
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*'
HELP_RE = re.compile(r'^# HELP (' + NAME + r') (.*)$')
TYPE_RE = re.compile(r'^# TYPE (' + NAME + r') (counter|gauge|histogram|summary|untyped)$')
SAMPLE_RE = re.compile(r'^(' + NAME + r')(\{.*\})? ([^ ]+)( -?[0-9]+)?$')
FLOAT_RE = re.compile(r'^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$')


class ParseError(Exception):
    pass


def parse_float(s):
    if s in ('+Inf', 'Inf'):
        return math.inf
    if s == '-Inf':
        return -math.inf
    if s == 'NaN':
        return math.nan
    if not FLOAT_RE.match(s):
        raise ParseError('not a number: %r' % s)
    return float(s)


def parse_labels(s):
    """'{a="x",b="y"}' -> list of (name, value); strict escapes."""
    out = []
    i, n = 1, len(s) - 1   # inside the braces
    while i < n:
        m = re.compile(LABEL).match(s, i)
        if not m:
            raise ParseError('bad label name at %r' % s[i:])
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError('label %s: expected ="' % name)
        i += 2
        val = []
        while True:
            if i >= n:
                raise ParseError('label %s: value not closed' % name)
            c = s[i]
            if c == '\\':
                e = s[i + 1:i + 2]
                if e not in ('\\', '"', 'n'):
                    raise ParseError('label %s: bad escape \\%s' % (name, e))
                val.append('\n' if e == 'n' else e)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == '\n':
                raise ParseError('label %s: raw newline' % name)
            else:
                val.append(c)
                i += 1
        out.append((name, ''.join(val)))
        if i < n:
            if s[i] != ',':
                raise ParseError('expected , after label %s' % name)
            i += 1
    names = [k for k, _ in out]
    if len(set(names)) != len(names):
        raise ParseError('a label given twice')
    return out


def family_of(name, types):
    """The family a sample name belongs to (histogram suffixes)."""
    for suf in ('_bucket', '_sum', '_count'):
        if name.endswith(suf):
            base = name[:-len(suf)]
            if types.get(base) in ('histogram', 'summary'):
                return base, suf
    return name, ''


def parse(text):
    """Returns (samples, types, problems). samples: list of (name, labels
    tuple, value)."""
    problems = []
    samples = []
    types, helps = {}, {}
    seen_series = set()
    closed = set()        # families whose samples are over
    current = None
    if text and not text.endswith('\n'):
        problems.append('the text does not end with a newline')
    for no, line in enumerate(text.split('\n')[:-1] if text.endswith('\n') else text.split('\n'), 1):
        try:
            if line.startswith('#'):
                m = HELP_RE.match(line)
                if m:
                    if m.group(1) in helps:
                        raise ParseError('second HELP for %s' % m.group(1))
                    helps[m.group(1)] = m.group(2)
                    continue
                m = TYPE_RE.match(line)
                if m:
                    fam = m.group(1)
                    if fam in types:
                        raise ParseError('second TYPE for %s' % fam)
                    if any(family_of(s[0], {fam: m.group(2)})[0] == fam for s in samples):
                        raise ParseError('TYPE for %s after its samples' % fam)
                    types[fam] = m.group(2)
                    continue
                raise ParseError('a comment that is neither HELP nor TYPE')
            m = SAMPLE_RE.match(line)
            if not m:
                raise ParseError('not a sample line')
            name, lab, val = m.group(1), m.group(2), m.group(3)
            labels = parse_labels(lab) if lab else []
            value = parse_float(val)
            fam, suf = family_of(name, types)
            if fam not in types:
                raise ParseError('sample of %s before (or without) its TYPE' % fam)
            if fam != current:
                if fam in closed:
                    raise ParseError('samples of %s are not together' % fam)
                if current:
                    closed.add(current)
                current = fam
            t = types[fam]
            if t == 'histogram' and not suf:
                raise ParseError('histogram %s: sample without _bucket/_sum/_count' % name)
            if suf == '_bucket' and 'le' not in dict(labels):
                raise ParseError('%s without le' % name)
            if t == 'counter' and (math.isnan(value) or value < 0):
                raise ParseError('counter %s is %s' % (name, val))
            key = (name, tuple(sorted(labels)))
            if key in seen_series:
                raise ParseError('series given twice: %s%s' % (name, lab or ''))
            seen_series.add(key)
            samples.append((name, tuple(labels), value))
        except ParseError as e:
            problems.append('line %d: %s: %s' % (no, e, line[:200]))
    problems.extend(check_histograms(samples, types))
    return samples, types, problems


def check_histograms(samples, types):
    problems = []
    series = {}
    for name, labels, value in samples:
        fam, suf = family_of(name, types)
        if types.get(fam) != 'histogram':
            continue
        rest = tuple(sorted((k, v) for k, v in labels if k != 'le'))
        s = series.setdefault((fam, rest), {'buckets': [], 'sum': None, 'count': None})
        if suf == '_bucket':
            s['buckets'].append((dict(labels)['le'], value))
        elif suf == '_sum':
            s['sum'] = value
        else:
            s['count'] = value
    for (fam, rest), s in series.items():
        where = '%s%s' % (fam, dict(rest) if rest else '')
        if s['sum'] is None or s['count'] is None:
            problems.append('histogram %s: _sum or _count missing' % where)
        b = s['buckets']
        if not b or b[-1][0] != '+Inf':
            problems.append('histogram %s: buckets do not end with le="+Inf"' % where)
            continue
        prev_le, prev_n = -math.inf, 0
        for le, n in b:
            try:
                x = parse_float(le)
            except ParseError:
                problems.append('histogram %s: le=%r is not a number' % (where, le))
                break
            if x <= prev_le:
                problems.append('histogram %s: le=%s not increasing' % (where, le))
            if n < prev_n:
                problems.append('histogram %s: bucket le=%s (%s) below the one before (%s): '
                                'not cumulative' % (where, le, n, prev_n))
            prev_le, prev_n = x, n
        if s['count'] is not None and b[-1][1] != s['count']:
            problems.append('histogram %s: +Inf bucket %s differs from _count %s'
                            % (where, b[-1][1], s['count']))
    return problems


def main(argv):
    if len(argv) < 3 or argv[1] not in ('check', 'value'):
        sys.stderr.write(__doc__)
        return 2
    try:
        with open(argv[2], encoding='utf-8') as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print('cannot read %s: %s' % (argv[2], e))
        return 1
    samples, types, problems = parse(text)
    if argv[1] == 'check':
        for p in problems:
            print(p)
        if not problems:
            print('ok: %d families, %d samples' % (len(types), len(samples)))
        return 1 if problems else 0
    want = (argv[3], tuple(sorted(tuple(a.split('=', 1)) for a in argv[4:])))
    hits = [v for n, l, v in samples if (n, tuple(sorted(l))) == want]
    if len(hits) != 1:
        print('no such sample' if not hits else 'several samples')
        return 1
    v = hits[0]
    print(int(v) if math.isfinite(v) and v == int(v) else v)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

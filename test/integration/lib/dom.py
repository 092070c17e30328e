#!/usr/bin/env python3
"""dom.py: checks over the DOM of the dashboard as dumped by headless
Chromium (--dump-dom), for test/integration/dashboard.sh.

  dom.py DOM running STATS_JSON       the figures match the API's
  dom.py DOM login idle|refused       the token form is shown, nothing else
  dom.py DOM search SEARCH_STATUS SEARCH_JSON MESSAGE_STATUS
                                      search and message view as the API answered

Exit 0 when every check holds; otherwise an AssertionError on stderr.
"""
import html.parser
import json
import sys

VOID = {'area', 'base', 'br', 'col', 'embed', 'hr', 'img', 'input', 'link', 'meta',
        'source', 'track', 'wbr'}


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children, self.parts = [], []

    def text(self):
        return ''.join(p if isinstance(p, str) else p.text() for p in self.parts)

    def walk(self):
        yield self
        for c in self.children:
            yield from c.walk()

    def find(self, **want):
        """Nodes whose attributes have these values (data_x for data-x)."""
        want = {k.replace('_', '-'): v for k, v in want.items()}
        return [n for n in self.walk()
                if all(n.attrs.get(k, object()) == v for k, v in want.items())]

    def one(self, **want):
        got = self.find(**want)
        assert len(got) == 1, ('expected one element with', want, 'found', len(got))
        return got[0]

    def shown(self):
        n = self
        while n is not None:
            if 'hidden' in n.attrs:
                return False
            n = n.parent
        return True


class Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node('#root', [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, attrs, self.cur)
        self.cur.children.append(n)
        self.cur.parts.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.parts.append(data)


def load(path):
    p = Parser()
    with open(path, encoding='utf-8') as f:
        p.feed(f.read())
    return p.root


def cell(row, field):
    return row.one(data_field=field)


def body_of(doc):
    return [n for n in doc.walk() if n.tag == 'body'][0]


def check_running(doc, stats):
    body = body_of(doc)
    assert body.attrs.get('data-state') == 'running', body.attrs
    assert int(body.attrs.get('data-refreshes', '0')) >= 2, body.attrs
    assert not doc.one(id='login').shown()
    assert doc.one(id='main').shown()
    assert doc.one(id='status').attrs.get('data-state') == 'ok'
    assert doc.one(id='version').text() == 'v' + stats['version']
    for d in stats['destinations']:
        row = doc.one(data_dest=d['name'])
        for field, want in (('queue_depth', d['queue_depth']), ('dead_letters', d['dead_letters']),
                            ('delivered', d['counters']['delivered'])):
            c = cell(row, field)
            assert c.attrs.get('data-value') == str(want), (d['name'], field, c.attrs, want)
            assert c.text() == str(want), (d['name'], field, c.text(), want)
        st = cell(row, 'state')
        assert st.attrs.get('data-value') == d['state'], (d['name'], st.attrs, d['state'])
        assert st.attrs.get('data-paused') == ('true' if d['paused'] else 'false'), st.attrs
        float(cell(row, 'rate').attrs['data-value'])      # a rate after two refreshes
        assert [n for n in cell(row, 'chart').walk() if n.tag == 'canvas']
        buttons = {n.attrs.get('data-action'): n for n in cell(row, 'actions').walk()
                   if n.tag == 'button'}
        assert set(buttons) == {'pause', 'resume', 'requeue'}, buttons
        assert ('disabled' in buttons['pause'].attrs) == d['paused']
        assert ('disabled' in buttons['resume'].attrs) != d['paused']
    names = [n.attrs['data-dest'] for n in doc.walk() if 'data-dest' in n.attrs]
    assert names == [d['name'] for d in stats['destinations']], names
    for s in stats['sources']:
        row = doc.one(data_source=s['name'])
        c = s['counters']
        errors = c['refused'] + c['failed'] + c['transform_errors']
        for field, want in (('received', c['received']), ('accepted', c['accepted']),
                            ('errors', errors)):
            got = cell(row, field).attrs.get('data-value')
            assert got == str(want), (s['name'], field, got, want)
        assert cell(row, 'state').text() == s['state']
        float(cell(row, 'rate').attrs['data-value'])
    assert [n for n in doc.one(id='overview').walk() if n.tag == 'canvas']


def check_login(doc, state):
    body = body_of(doc)
    assert body.attrs.get('data-state') == 'login', body.attrs
    assert doc.one(id='login').shown()
    assert not doc.one(id='main').shown()
    msg = doc.one(id='login-msg')
    assert msg.attrs.get('data-state') == state, msg.attrs
    if state == 'refused':
        assert 'refused' in msg.text(), msg.text()
    assert not doc.find(data_dest='files')


def check_search(doc, scode, search, mcode):
    msg = doc.one(id='search-msg')
    state = msg.attrs.get('data-state')
    rows = [n for n in doc.one(id='search-body').walk() if 'data-message' in n.attrs]
    if scode == '200':
        items = search['items']
        assert state == ('results' if items else 'empty'), (state, msg.text())
        assert len(rows) == len(items), (len(rows), len(items))
    else:
        assert scode == '404' and search['error'], (scode, search)
        assert state == 'unavailable', (state, msg.text())
        assert msg.text() == 'Message search is not available on this broker', msg.text()
        assert not rows and not doc.one(id='search-results').shown()
    view = doc.one(id='message-msg')
    assert doc.one(id='message').shown()
    if mcode == '200':
        assert view.attrs.get('data-state') == 'shown', view.attrs
        assert doc.one(id='message-body').shown()
    else:
        assert view.attrs.get('data-state') in ('unavailable', 'error'), view.attrs
        assert not doc.one(id='message-body').shown()


def main(argv):
    doc = load(argv[1])
    what = argv[2]
    if what == 'running':
        check_running(doc, json.load(open(argv[3])))
    elif what == 'login':
        check_login(doc, argv[3])
    elif what == 'search':
        check_search(doc, argv[3], json.load(open(argv[4])), argv[5])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

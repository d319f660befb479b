package main

// A PromQL subset: what deploy/grafana/jupiter-dashboard.json uses, no
// more. Selectors with =, !=, =~, !~ matchers and a range; rate();
// histogram_quantile(); sum, max, min, avg, count with by (…); topk; the
// arithmetic operators and comparisons against numbers (filters).
// Differences from Prometheus, fine for a picture: rate() does not
// extrapolate to the window's edges, and binary operators between vectors
// match on all labels (ignoring the metric name).

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// labels of a series; "__name__" is the metric name.
type labels map[string]string

func (l labels) key(drop ...string) string {
	ks := make([]string, 0, len(l))
	for k := range l {
		if !contains(drop, k) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k + "=" + strconv.Quote(l[k]) + ",")
	}
	return b.String()
}

func (l labels) without(drop ...string) labels {
	out := labels{}
	for k, v := range l {
		if !contains(drop, k) {
			out[k] = v
		}
	}
	return out
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// point is one sample: unix milliseconds and value.
type point struct {
	t int64
	v float64
}

type series struct {
	l   labels
	pts []point // by time
}

// db holds every recorded series.
type db struct {
	byName map[string][]*series
	byKey  map[string]*series
	// lookback: an instant selector takes a series' latest point at most
	// this old (ms); a series gone from the scrapes goes stale after it.
	lookback int64
}

func newDB(lookback int64) *db {
	return &db{byName: map[string][]*series{}, byKey: map[string]*series{}, lookback: lookback}
}

func (d *db) add(l labels, t int64, v float64) {
	k := l.key()
	s := d.byKey[k]
	if s == nil {
		s = &series{l: l}
		d.byKey[k] = s
		d.byName[l["__name__"]] = append(d.byName[l["__name__"]], s)
	}
	s.pts = append(s.pts, point{t, v})
}

// elem is one element of an instant vector.
type elem struct {
	l labels
	v float64
}

// value is a result: a vector, or a scalar (isScalar).
type value struct {
	vec      []elem
	scalar   float64
	isScalar bool
}

// node is a parsed expression.
type node interface {
	eval(d *db, t int64) (value, error)
}

type numLit struct{ v float64 }

type matcher struct {
	name, op, val string
	re            *regexp.Regexp
}

func (m matcher) match(l labels) bool {
	v := l[m.name]
	switch m.op {
	case "=":
		return v == m.val
	case "!=":
		return v != m.val
	case "=~":
		return m.re.MatchString(v)
	default: // !~
		return !m.re.MatchString(v)
	}
}

type selector struct {
	name     string
	matchers []matcher
	rng      int64 // ms; 0: instant
}

type call struct {
	fn   string
	args []node
}

type agg struct {
	op    string
	by    []string
	param node // topk's k
	expr  node
}

type binary struct {
	op       string
	lhs, rhs node
}

func (n numLit) eval(*db, int64) (value, error) { return value{scalar: n.v, isScalar: true}, nil }

func (s selector) series(d *db) []*series {
	var out []*series
next:
	for _, x := range d.byName[s.name] {
		for _, m := range s.matchers {
			if !m.match(x.l) {
				continue next
			}
		}
		out = append(out, x)
	}
	return out
}

func (s selector) eval(d *db, t int64) (value, error) {
	if s.rng != 0 {
		return value{}, fmt.Errorf("range selector %s[…] outside rate()", s.name)
	}
	var out value
	for _, x := range s.series(d) {
		if p, ok := latest(x.pts, t); ok && t-p.t <= d.lookback {
			out.vec = append(out.vec, elem{x.l, p.v})
		}
	}
	return out, nil
}

// latest is the last point at or before t.
func latest(pts []point, t int64) (point, bool) {
	i := sort.Search(len(pts), func(i int) bool { return pts[i].t > t })
	if i == 0 {
		return point{}, false
	}
	return pts[i-1], true
}

func (c call) eval(d *db, t int64) (value, error) {
	switch c.fn {
	case "rate":
		s, ok := c.args[0].(selector)
		if len(c.args) != 1 || !ok || s.rng == 0 {
			return value{}, fmt.Errorf("rate() takes one range selector")
		}
		var out value
		for _, x := range s.series(d) {
			if r, ok := rate(x.pts, t-s.rng, t); ok {
				out.vec = append(out.vec, elem{x.l.without("__name__"), r})
			}
		}
		return out, nil
	case "histogram_quantile":
		if len(c.args) != 2 {
			return value{}, fmt.Errorf("histogram_quantile() takes 2 arguments")
		}
		q, err := c.args[0].eval(d, t)
		if err != nil || !q.isScalar {
			return value{}, fmt.Errorf("histogram_quantile: the quantile must be a number")
		}
		v, err := c.args[1].eval(d, t)
		if err != nil {
			return value{}, err
		}
		return value{vec: quantiles(q.scalar, v.vec)}, nil
	}
	return value{}, fmt.Errorf("unsupported function %s()", c.fn)
}

// rate is the per-second increase of a counter over the points in
// (from, to], counter resets accounted for.
func rate(pts []point, from, to int64) (float64, bool) {
	i := sort.Search(len(pts), func(i int) bool { return pts[i].t > from })
	j := sort.Search(len(pts), func(i int) bool { return pts[i].t > to })
	w := pts[i:j]
	if len(w) < 2 {
		return 0, false
	}
	inc := 0.0
	for k := 1; k < len(w); k++ {
		if d := w[k].v - w[k-1].v; d >= 0 {
			inc += d
		} else {
			inc += w[k].v // reset
		}
	}
	return inc / (float64(w[len(w)-1].t-w[0].t) / 1000), true
}

// quantiles is histogram_quantile over cumulative buckets (label le),
// interpolating linearly inside the bucket, as Prometheus does.
func quantiles(q float64, vec []elem) []elem {
	type bucket struct{ le, n float64 }
	groups := map[string][]bucket{}
	ls := map[string]labels{}
	for _, e := range vec {
		le, err := strconv.ParseFloat(e.l["le"], 64)
		if err != nil {
			continue
		}
		k := e.l.key("le", "__name__")
		groups[k] = append(groups[k], bucket{le, e.v})
		ls[k] = e.l.without("le", "__name__")
	}
	var out []elem
	for k, bs := range groups {
		sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
		total := bs[len(bs)-1].n
		if !math.IsInf(bs[len(bs)-1].le, 1) || total == 0 {
			continue
		}
		rank := q * total
		v := math.NaN()
		for i, b := range bs {
			if b.n < rank {
				continue
			}
			if math.IsInf(b.le, 1) {
				v = bs[max(i-1, 0)].le
				break
			}
			lo, prev := 0.0, 0.0
			if i > 0 {
				lo, prev = bs[i-1].le, bs[i-1].n
			}
			v = b.le
			if b.n > prev {
				v = lo + (b.le-lo)*(rank-prev)/(b.n-prev)
			}
			break
		}
		out = append(out, elem{ls[k], v})
	}
	return out
}

func (a agg) eval(d *db, t int64) (value, error) {
	v, err := a.expr.eval(d, t)
	if err != nil {
		return value{}, err
	}
	if v.isScalar {
		return value{}, fmt.Errorf("%s() of a number", a.op)
	}
	if a.op == "topk" {
		k, err := a.param.eval(d, t)
		if err != nil || !k.isScalar {
			return value{}, fmt.Errorf("topk: k must be a number")
		}
		vec := append([]elem(nil), v.vec...)
		sort.SliceStable(vec, func(i, j int) bool { return vec[i].v > vec[j].v })
		return value{vec: vec[:min(len(vec), int(k.scalar))]}, nil
	}
	type acc struct {
		l        labels
		sum, n   float64
		min, max float64
	}
	groups := map[string]*acc{}
	var order []string
	for _, e := range v.vec {
		gl := labels{}
		for _, b := range a.by {
			if x, ok := e.l[b]; ok {
				gl[b] = x
			}
		}
		k := gl.key()
		g := groups[k]
		if g == nil {
			g = &acc{l: gl, min: math.Inf(1), max: math.Inf(-1)}
			groups[k] = g
			order = append(order, k)
		}
		g.sum += e.v
		g.n++
		g.min = math.Min(g.min, e.v)
		g.max = math.Max(g.max, e.v)
	}
	var out value
	for _, k := range order {
		g := groups[k]
		r := map[string]float64{"sum": g.sum, "count": g.n, "avg": g.sum / g.n, "min": g.min, "max": g.max}[a.op]
		out.vec = append(out.vec, elem{g.l, r})
	}
	return out, nil
}

func (b binary) eval(d *db, t int64) (value, error) {
	l, err := b.lhs.eval(d, t)
	if err != nil {
		return value{}, err
	}
	r, err := b.rhs.eval(d, t)
	if err != nil {
		return value{}, err
	}
	cmp := strings.ContainsAny(b.op, "<>=") || b.op == "!="
	switch {
	case l.isScalar && r.isScalar:
		v, _ := apply(b.op, l.scalar, r.scalar)
		return value{scalar: v, isScalar: true}, nil
	case r.isScalar || l.isScalar:
		vec, s, vecLeft := l.vec, r.scalar, true
		if l.isScalar {
			vec, s, vecLeft = r.vec, l.scalar, false
		}
		var out value
		for _, e := range vec {
			x, y := e.v, s
			if !vecLeft {
				x, y = s, e.v
			}
			v, keep := apply(b.op, x, y)
			switch {
			case cmp && keep:
				out.vec = append(out.vec, e)
			case !cmp:
				out.vec = append(out.vec, elem{e.l.without("__name__"), v})
			}
		}
		return out, nil
	}
	if cmp {
		return value{}, fmt.Errorf("comparison between two vectors is not supported")
	}
	right := map[string]float64{}
	for _, e := range r.vec {
		right[e.l.key("__name__")] = e.v
	}
	var out value
	for _, e := range l.vec {
		if y, ok := right[e.l.key("__name__")]; ok {
			v, _ := apply(b.op, e.v, y)
			out.vec = append(out.vec, elem{e.l.without("__name__"), v})
		}
	}
	return out, nil
}

// apply returns x op y, and for comparisons whether it holds.
func apply(op string, x, y float64) (float64, bool) {
	switch op {
	case "+":
		return x + y, true
	case "-":
		return x - y, true
	case "*":
		return x * y, true
	case "/":
		return x / y, true
	case "==":
		return x, x == y
	case "!=":
		return x, x != y
	case ">":
		return x, x > y
	case "<":
		return x, x < y
	case ">=":
		return x, x >= y
	case "<=":
		return x, x <= y
	}
	return math.NaN(), false
}

// parser

type parser struct {
	toks []string
	i    int
}

// parse parses expr (Grafana variables already substituted).
func parse(expr string) (node, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.i])
	}
	return n, nil
}

func lex(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string")
			}
			out = append(out, s[i:j+1])
			i = j + 1
		case strings.HasPrefix(s[i:], "=~"), strings.HasPrefix(s[i:], "!~"), strings.HasPrefix(s[i:], "=="),
			strings.HasPrefix(s[i:], "!="), strings.HasPrefix(s[i:], ">="), strings.HasPrefix(s[i:], "<="):
			out = append(out, s[i:i+2])
			i += 2
		case strings.ContainsRune("(){}[],=+-*/<>", rune(c)):
			out = append(out, s[i:i+1])
			i++
		case c == '_' || c == ':' || c == '.' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)):
			j := i
			for j < len(s) && (s[j] == '_' || s[j] == ':' || s[j] == '.' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			out = append(out, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected character %q", c)
		}
	}
	return out, nil
}

func (p *parser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *parser) next() string { t := p.peek(); p.i++; return t }

func (p *parser) want(t string) error {
	if got := p.next(); got != t {
		return fmt.Errorf("want %q, got %q", t, got)
	}
	return nil
}

var precedence = map[string]int{"==": 1, "!=": 1, ">": 1, "<": 1, ">=": 1, "<=": 1, "+": 2, "-": 2, "*": 3, "/": 3}

// expr parses operators of at least minPrec (precedence climbing).
func (p *parser) expr(minPrec int) (node, error) {
	lhs, err := p.unary()
	if err != nil {
		return nil, err
	}
	for {
		op := p.peek()
		prec, ok := precedence[op]
		if !ok || prec < minPrec {
			return lhs, nil
		}
		p.next()
		rhs, err := p.expr(prec + 1)
		if err != nil {
			return nil, err
		}
		lhs = binary{op, lhs, rhs}
	}
}

var aggregations = map[string]bool{"sum": true, "max": true, "min": true, "avg": true, "count": true, "topk": true}

func (p *parser) unary() (node, error) {
	t := p.next()
	switch {
	case t == "(":
		n, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		return n, p.want(")")
	case t != "" && (unicode.IsDigit(rune(t[0])) || t[0] == '.'):
		v, err := strconv.ParseFloat(t, 64)
		return numLit{v}, err
	case aggregations[t]:
		return p.aggregation(t)
	case p.peek() == "(":
		p.next()
		c := call{fn: t}
		for p.peek() != ")" {
			a, err := p.expr(0)
			if err != nil {
				return nil, err
			}
			c.args = append(c.args, a)
			if p.peek() == "," {
				p.next()
			}
		}
		p.next()
		return c, nil
	case t != "" && (t[0] == '_' || unicode.IsLetter(rune(t[0]))):
		return p.selector(t)
	}
	return nil, fmt.Errorf("unexpected %q", t)
}

func (p *parser) aggregation(op string) (node, error) {
	a := agg{op: op}
	if p.peek() == "by" {
		p.next()
		if err := p.want("("); err != nil {
			return nil, err
		}
		for p.peek() != ")" {
			if t := p.next(); t != "," {
				a.by = append(a.by, t)
			}
		}
		p.next()
	}
	if err := p.want("("); err != nil {
		return nil, err
	}
	if op == "topk" {
		k, err := p.expr(0)
		if err != nil {
			return nil, err
		}
		a.param = k
		if err := p.want(","); err != nil {
			return nil, err
		}
	}
	e, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	a.expr = e
	return a, p.want(")")
}

func (p *parser) selector(name string) (node, error) {
	s := selector{name: name, matchers: []matcher{}}
	if p.peek() == "{" {
		p.next()
		for p.peek() != "}" {
			m := matcher{name: p.next(), op: p.next()}
			raw := p.next()
			v, err := strconv.Unquote(raw)
			if err != nil {
				return nil, fmt.Errorf("label value %s: %v", raw, err)
			}
			m.val = v
			switch m.op {
			case "=~", "!~":
				if m.re, err = regexp.Compile("^(?:" + v + ")$"); err != nil {
					return nil, err
				}
			case "=", "!=":
			default:
				return nil, fmt.Errorf("unknown matcher %q", m.op)
			}
			s.matchers = append(s.matchers, m)
			if p.peek() == "," {
				p.next()
			}
		}
		p.next()
	}
	if p.peek() == "[" {
		p.next()
		d, err := parseDuration(p.next())
		if err != nil {
			return nil, err
		}
		s.rng = d
		if err := p.want("]"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// parseDuration reads a PromQL duration (30s, 5m, 1h, 500ms) in ms.
func parseDuration(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		ms     int64
	}{{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			if v, err := strconv.ParseInt(n, 10, 64); err == nil {
				return v * u.ms, nil
			}
		}
	}
	return 0, fmt.Errorf("bad duration %q", s)
}

// parseExposition adds a Prometheus text-format page scraped at t
// (unix ms) to d, with extra labels (instance).
func parseExposition(d *db, text string, t int64, extra labels) error {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		l := labels{}
		for k, v := range extra {
			l[k] = v
		}
		rest := line
		if i := strings.IndexAny(line, "{ "); i > 0 {
			l["__name__"] = line[:i]
			rest = line[i:]
		}
		if strings.HasPrefix(rest, "{") {
			var err error
			if rest, err = parseLabels(rest[1:], l); err != nil {
				return fmt.Errorf("%q: %v", line, err)
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return fmt.Errorf("%q: %v", line, err)
		}
		d.add(l, t, v)
	}
	return nil
}

// parseLabels reads `a="x",b="y"}` into l and returns what follows.
func parseLabels(s string, l labels) (string, error) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return "", fmt.Errorf("bad label list")
		}
		name := s[:eq]
		var b strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return "", fmt.Errorf("unterminated label value")
		}
		l[name] = b.String()
		s = s[i+1:]
	}
}

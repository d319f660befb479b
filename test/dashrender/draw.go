package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// dashboard is the part of a Grafana dashboard the renderer reads.
type dashboard struct {
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	GridPos     struct{ X, Y, W, H int }
	FieldConfig struct {
		Defaults struct {
			Unit     string   `json:"unit"`
			Min      *float64 `json:"min"`
			Max      *float64 `json:"max"`
			Decimals *int     `json:"decimals"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Options struct {
		TextMode string `json:"textMode"`
	} `json:"options"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

// Grafana's dark theme and classic palette.
var (
	bg      = color.RGBA{0x11, 0x12, 0x17, 0xff}
	panelBg = color.RGBA{0x18, 0x1b, 0x1f, 0xff}
	border  = color.RGBA{0x2c, 0x30, 0x35, 0xff}
	grid    = color.RGBA{0x26, 0x29, 0x2e, 0xff}
	text    = color.RGBA{0xcc, 0xcc, 0xdc, 0xff}
	dim     = color.RGBA{0x8e, 0x8e, 0x9e, 0xff}
	green   = color.RGBA{0x73, 0xbf, 0x69, 0xff}
	palette = []color.RGBA{{0x73, 0xbf, 0x69, 0xff}, {0xf2, 0xcc, 0x0c, 0xff}, {0x57, 0x94, 0xf2, 0xff}, {0xff, 0x78, 0x0a, 0xff},
		{0xf2, 0x49, 0x5c, 0xff}, {0xb8, 0x77, 0xd9, 0xff}, {0x8a, 0xb8, 0xff, 0xff}, {0x37, 0x87, 0x2d, 0xff},
		{0xfa, 0xde, 0x2a, 0xff}, {0x70, 0x5d, 0xa0, 0xff}, {0x96, 0xd9, 0x8d, 0xff}, {0xff, 0xb3, 0x57, 0xff}}
)

const (
	rowPx    = 34 // pixels per gridPos height unit
	headerPx = 56
	glyphW   = 7 // basicfont.Face7x13
	glyphH   = 13
)

// line is one plotted series.
type line struct {
	name string
	pts  []point // t, v (NaN/Inf dropped)
}

func draw(d dashboard, r *recording, width int, caption string) (*image.RGBA, error) {
	maxY := 0
	for _, p := range d.Panels {
		maxY = max(maxY, p.GridPos.Y+p.GridPos.H)
	}
	img := image.NewRGBA(image.Rect(0, 0, width, headerPx+maxY*rowPx+8))
	fill(img, img.Bounds(), bg)
	from, to := r.times[0], r.times[len(r.times)-1]
	drawText(img, 10, 8, d.Title, text, 2)
	sub := time.UnixMilli(from).UTC().Format("2006-01-02 15:04:05") + " - " + time.UnixMilli(to).UTC().Format("15:04:05 UTC") +
		"  (rendered from recorded /metrics by test/dashrender)"
	if caption != "" {
		sub = caption + "   " + sub
	}
	drawText(img, 10, 36, sub, dim, 1)
	colW := float64(width-8) / 24
	for _, p := range d.Panels {
		x0 := 4 + int(float64(p.GridPos.X)*colW)
		x1 := 4 + int(float64(p.GridPos.X+p.GridPos.W)*colW)
		y0 := headerPx + p.GridPos.Y*rowPx
		y1 := y0 + p.GridPos.H*rowPx
		rect := image.Rect(x0+3, y0+3, x1-3, y1-3)
		if p.Type == "row" {
			drawText(img, rect.Min.X+4, rect.Min.Y+6, p.Title, text, 1)
			continue
		}
		fill(img, rect, panelBg)
		outline(img, rect, border)
		drawText(img, rect.Min.X+8, rect.Min.Y+6, clip(p.Title, rect.Dx()-16, 1), text, 1)
		body := image.Rect(rect.Min.X+8, rect.Min.Y+24, rect.Max.X-8, rect.Max.Y-6)
		var err error
		switch p.Type {
		case "timeseries":
			err = drawTimeseries(img, body, p, r, from, to)
		case "stat":
			err = drawStat(img, body, p, r, to)
		case "bargauge":
			err = drawBars(img, body, p, r, to)
		default:
			err = fmt.Errorf("panel type %q not supported", p.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("panel %q: %v", p.Title, err)
		}
	}
	return img, nil
}

// instant evaluates a panel's queries at t: one (legend, value) per result.
func instant(p panel, r *recording, t int64) ([]elem, []string, error) {
	var vals []elem
	var names []string
	for _, tg := range p.Targets {
		n, err := parse(r.expand(tg.Expr))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %v", tg.Expr, err)
		}
		v, err := n.eval(r.db, t)
		if err != nil {
			return nil, nil, err
		}
		if v.isScalar {
			v.vec = []elem{{labels{}, v.scalar}}
		}
		for _, e := range v.vec {
			vals = append(vals, e)
			names = append(names, legend(tg.LegendFormat, e.l))
		}
	}
	return vals, names, nil
}

var legendVar = regexp.MustCompile(`\{\{\s*([a-zA-Z_]+)\s*\}\}`)

func legend(format string, l labels) string {
	if format == "" {
		return "{" + strings.TrimSuffix(l.without("__name__").key(), ",") + "}"
	}
	return legendVar.ReplaceAllStringFunc(format, func(m string) string { return l[legendVar.FindStringSubmatch(m)[1]] })
}

func drawTimeseries(img *image.RGBA, body image.Rectangle, p panel, r *recording, from, to int64) error {
	byName := map[string]*line{}
	var order []string
	for _, t := range r.times {
		vals, names, err := instant(p, r, t)
		if err != nil {
			return err
		}
		for i, e := range vals {
			if math.IsNaN(e.v) || math.IsInf(e.v, 0) {
				continue
			}
			l := byName[names[i]]
			if l == nil {
				l = &line{name: names[i]}
				byName[names[i]] = l
				order = append(order, names[i])
			}
			l.pts = append(l.pts, point{t, e.v})
		}
	}
	sort.Strings(order)
	lines := make([]*line, len(order))
	for i, n := range order {
		lines[i] = byName[n]
	}
	// Legend: as many rows as fit in a third of the panel.
	legendRows := legendLayout(lines, body.Dx())
	maxRows := max(1, body.Dy()/3/(glyphH+3))
	shown := lines
	more := 0
	for len(legendRows) > maxRows {
		shown = shown[:len(shown)-1]
		more = len(lines) - len(shown)
		legendRows = legendLayout(shown, body.Dx()-12*glyphW)
	}
	if len(lines) == 0 {
		drawText(img, body.Min.X+body.Dx()/2-3*glyphW, body.Min.Y+body.Dy()/2-glyphH, "No data", dim, 1)
		return nil
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, pt := range l.pts {
			lo, hi = math.Min(lo, pt.v), math.Max(hi, pt.v)
		}
	}
	u := p.FieldConfig.Defaults
	lo = math.Min(lo, 0)
	if u.Min != nil {
		lo = *u.Min
	}
	if u.Max != nil && hi <= *u.Max {
		hi = *u.Max
	}
	if hi <= lo {
		hi = lo + 1
	}
	hi = niceCeil(hi)
	// Grid and axes: the plot starts right of the widest value label.
	var ylabels [5]string
	labelW := 0
	for i := range ylabels {
		ylabels[i] = format(u.Unit, lo+(hi-lo)*float64(i)/4, u.Decimals)
		labelW = max(labelW, len([]rune(ylabels[i]))*glyphW)
	}
	legendH := len(legendRows) * (glyphH + 3)
	plot := image.Rect(body.Min.X+labelW+8, body.Min.Y+4, body.Max.X-6, body.Max.Y-legendH-glyphH-8)
	for i, lbl := range ylabels {
		y := plot.Max.Y - i*plot.Dy()/4
		hline(img, plot.Min.X, plot.Max.X, y, grid)
		drawText(img, plot.Min.X-6-len([]rune(lbl))*glyphW, y-glyphH/2, lbl, dim, 1)
	}
	for i := 0; i <= 4; i++ {
		t := from + (to-from)*int64(i)/4
		x := plot.Min.X + i*plot.Dx()/4
		vline(img, x, plot.Min.Y, plot.Max.Y, grid)
		lbl := time.UnixMilli(t).UTC().Format("15:04:05")
		drawText(img, min(max(x-len(lbl)*glyphW/2, plot.Min.X), plot.Max.X-len(lbl)*glyphW), plot.Max.Y+3, lbl, dim, 1)
	}
	px := func(pt point) (int, int) {
		x := plot.Min.X + int(float64(pt.t-from)/float64(max(to-from, 1))*float64(plot.Dx()))
		y := plot.Max.Y - int((pt.v-lo)/(hi-lo)*float64(plot.Dy()))
		return x, min(max(y, plot.Min.Y), plot.Max.Y)
	}
	for i, l := range lines {
		c := palette[i%len(palette)]
		for j := 1; j < len(l.pts); j++ {
			if l.pts[j].t-l.pts[j-1].t > 3*r.interval {
				continue // a gap: no line across it
			}
			x0, y0 := px(l.pts[j-1])
			x1, y1 := px(l.pts[j])
			segment(img, x0, y0, x1, y1, c)
			segment(img, x0, y0+1, x1, y1+1, c)
		}
		if len(l.pts) == 1 {
			x, y := px(l.pts[0])
			fill(img, image.Rect(x-1, y-1, x+2, y+2), c)
		}
	}
	// Legend.
	y := plot.Max.Y + glyphH + 8
	k := 0
	for ri, row := range legendRows {
		x := body.Min.X + 4
		for _, l := range row {
			c := palette[k%len(palette)]
			fill(img, image.Rect(x, y+4, x+12, y+7), c)
			drawText(img, x+16, y, l.name, text, 1)
			x += 16 + (len(l.name)+3)*glyphW
			k++
		}
		if ri == len(legendRows)-1 && more > 0 {
			drawText(img, x, y, fmt.Sprintf("+%d more", more), dim, 1)
		}
		y += glyphH + 3
	}
	return nil
}

// legendLayout wraps legend entries into rows of at most width pixels.
func legendLayout(lines []*line, width int) [][]*line {
	var rows [][]*line
	x := 0
	for _, l := range lines {
		w := 16 + (len(l.name)+3)*glyphW
		if len(rows) == 0 || x+w > width {
			rows = append(rows, nil)
			x = 0
		}
		rows[len(rows)-1] = append(rows[len(rows)-1], l)
		x += w
	}
	return rows
}

func drawStat(img *image.RGBA, body image.Rectangle, p panel, r *recording, t int64) error {
	vals, names, err := instant(p, r, t)
	if err != nil {
		return err
	}
	s := "No data"
	if len(vals) > 0 {
		if p.Options.TextMode == "name" {
			s = strings.Join(names, ", ")
		} else {
			s = format(p.FieldConfig.Defaults.Unit, vals[0].v, p.FieldConfig.Defaults.Decimals)
		}
	}
	scale := 4
	for scale > 1 && len(s)*glyphW*scale > body.Dx() {
		scale--
	}
	c := green
	if len(vals) == 0 {
		c, scale = dim, 1
	}
	drawText(img, body.Min.X+(body.Dx()-len(s)*glyphW*scale)/2, body.Min.Y+(body.Dy()-glyphH*scale)/2, s, c, scale)
	return nil
}

func drawBars(img *image.RGBA, body image.Rectangle, p panel, r *recording, t int64) error {
	vals, names, err := instant(p, r, t)
	if err != nil {
		return err
	}
	if len(vals) == 0 {
		drawText(img, body.Min.X+body.Dx()/2-3*glyphW, body.Min.Y+body.Dy()/2-glyphH, "No data", dim, 1)
		return nil
	}
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case vals[a].v > vals[b].v:
			return -1
		case vals[a].v < vals[b].v:
			return 1
		}
		return 0
	})
	top := vals[idx[0]].v
	rowH := min(body.Dy()/len(vals), 3*glyphH)
	labelW := 0
	for _, n := range names {
		labelW = max(labelW, len(n))
	}
	labelW = min(labelW*glyphW+8, body.Dx()/2)
	for k, i := range idx {
		y := body.Min.Y + k*rowH
		drawText(img, body.Min.X, y+(rowH-glyphH)/2, clip(names[i], labelW-8, 1), text, 1)
		val := format(p.FieldConfig.Defaults.Unit, vals[i].v, p.FieldConfig.Defaults.Decimals)
		barMax := body.Dx() - labelW - (len(val)+2)*glyphW
		w := int(float64(barMax) * vals[i].v / math.Max(top, 1e-300))
		bar := image.Rect(body.Min.X+labelW, y+3, body.Min.X+labelW+barMax, y+rowH-3)
		fill(img, bar, grid)
		for x := 0; x < w; x++ { // blue → yellow → red, as Grafana's continuous-BlYlRd
			c := gradient(float64(x) / float64(max(barMax, 1)))
			vline(img, bar.Min.X+x, bar.Min.Y, bar.Max.Y-1, c)
		}
		drawText(img, bar.Max.X+glyphW, y+(rowH-glyphH)/2, val, text, 1)
	}
	return nil
}

func gradient(f float64) color.RGBA {
	stops := []color.RGBA{{0x57, 0x94, 0xf2, 0xff}, {0xf2, 0xcc, 0x0c, 0xff}, {0xf2, 0x49, 0x5c, 0xff}}
	f = math.Min(math.Max(f, 0), 1) * 2
	i := min(int(f), 1)
	a, b, g := stops[i], stops[i+1], f-float64(i)
	mix := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*g) }
	return color.RGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 0xff}
}

// format renders v in Grafana's style for the units the dashboard uses.
func format(unit string, v float64, decimals *int) string {
	if decimals != nil {
		return fmt.Sprintf("%.*f", *decimals, v)
	}
	switch unit {
	case "percentunit":
		return trim(fmt.Sprintf("%.1f", v*100)) + "%"
	case "s":
		switch a := math.Abs(v); {
		case a == 0:
			return "0 s"
		case a < 1e-3:
			return trim(fmt.Sprintf("%.0f", v*1e6)) + " µs"
		case a < 1:
			return trim(fmt.Sprintf("%.2f", v*1e3)) + " ms"
		}
		return trim(fmt.Sprintf("%.2f", v)) + " s"
	case "bytes":
		units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
		i := 0
		for math.Abs(v) >= 1024 && i < len(units)-1 {
			v /= 1024
			i++
		}
		return trim(fmt.Sprintf("%.1f", v)) + " " + units[i]
	case "ops":
		return short(v) + " ops/s"
	}
	return short(v)
}

func short(v float64) string {
	for _, u := range []struct {
		div float64
		s   string
	}{{1e9, " Bil"}, {1e6, " Mil"}, {1e3, " K"}} {
		if math.Abs(v) >= u.div {
			return trim(fmt.Sprintf("%.2f", v/u.div)) + u.s
		}
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return trim(fmt.Sprintf("%.2f", v))
}

func trim(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v*0.9999 {
			return m * p
		}
	}
	return 10 * p
}

// clip shortens s to fit width pixels at scale, ending in "..".
func clip(s string, width, scale int) string {
	n := width / (glyphW * scale)
	if len(s) <= n || n < 3 {
		return s
	}
	return s[:n-2] + ".."
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func outline(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	hline(img, r.Min.X, r.Max.X-1, r.Min.Y, c)
	hline(img, r.Min.X, r.Max.X-1, r.Max.Y-1, c)
	vline(img, r.Min.X, r.Min.Y, r.Max.Y-1, c)
	vline(img, r.Max.X-1, r.Min.Y, r.Max.Y-1, c)
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

// segment draws a line (Bresenham).
func segment(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += sx
		} else {
			e += dx
			y0 += sy
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

func sign(x int) int {
	switch {
	case x < 0:
		return -1
	case x > 0:
		return 1
	}
	return 0
}

// drawText writes s with its top-left corner at x, y, each pixel of the
// 7×13 bitmap font drawn scale×scale.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA, scale int) {
	if scale <= 1 {
		dr := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13,
			Dot: fixed.P(x, y+basicfont.Face7x13.Ascent)}
		dr.DrawString(s)
		return
	}
	w := len([]rune(s)) * glyphW
	tmp := image.NewAlpha(image.Rect(0, 0, w, glyphH))
	dr := font.Drawer{Dst: tmp, Src: image.Opaque, Face: basicfont.Face7x13, Dot: fixed.P(0, basicfont.Face7x13.Ascent)}
	dr.DrawString(s)
	for ty := 0; ty < glyphH; ty++ {
		for tx := 0; tx < w; tx++ {
			if tmp.AlphaAt(tx, ty).A > 0x80 {
				fill(img, image.Rect(x+tx*scale, y+ty*scale, x+(tx+1)*scale, y+(ty+1)*scale), c)
			}
		}
	}
}

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package ui

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// page is what every template gets.
type page struct {
	Title  string
	Nav    string
	User   string
	Admin  bool
	CSRF   string
	Asset  string
	Status int
	Data   any
}

// parsePages parses each page template together with the layout.
func parsePages(funcs template.FuncMap) (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("dashboard templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" || name == "parts" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, f)
		if err != nil {
			return nil, fmt.Errorf("dashboard template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// render writes a whole page; a request from htmx for a fragment uses
// renderPart instead.
func (u *UI) render(w http.ResponseWriter, r *http.Request, s *session, status int, name string, data any) {
	u.execute(w, s, status, name, "layout.html", data)
}

// renderPart writes one named template of a page (an htmx swap).
func (u *UI) renderPart(w http.ResponseWriter, s *session, name, part string, data any) {
	u.execute(w, s, http.StatusOK, name, part, data)
}

func (u *UI) execute(w http.ResponseWriter, s *session, status int, name, tmpl string, data any) {
	t := u.pages[name]
	p := page{Title: name, Nav: name, Asset: u.assetVersion, Status: status, Data: data}
	if s != nil {
		p.User, p.Admin, p.CSRF = s.name, s.admin, s.csrf
	}
	var buf bytes.Buffer
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, tmpl, p); err != nil {
		u.o.Logger.Error("dashboard template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows an error page with status.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, s *session, status int, msg string) {
	u.render(w, r, s, status, "error", errorData{Status: status, Text: http.StatusText(status), Message: msg})
}

type errorData struct {
	Status        int
	Text, Message string
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"iec":     iec,
		"when":    func(t any) template.HTML { return when(t, u.o.Now()) },
		"dur":     span,
		"int64":   toInt64,
		"short":   shortDigest,
		"pct":     pct,
		"path":    url.PathEscape,
		"repoURL": repoURL,
		"join":    strings.Join,
	}
}

// toInt64 converts the counts and sizes templates show (int, uint64).
func toInt64(v any) int64 {
	switch x := v.(type) {
	case int:
		return int64(x)
	case uint64:
		return int64(min(x, 1<<62))
	case int64:
		return x
	}
	return 0
}

// repoURL is the dashboard path of a repository, with an optional
// sub-path (a tag or digest page).
func repoURL(repo string, rest ...string) string {
	p := Prefix + "repositories/" + repo
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

func containsAny(s, chars string) bool { return strings.ContainsAny(s, chars) }

// iec formats a size in IEC units: 1023 B, 1.5 KiB, 12 MiB.
func iec(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f %s", v, units[i])
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// when shows a time relative to now and absolute (UTC), in a <time>
// element a script or a reader can parse; "never" for none.
func when(v any, now time.Time) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x != nil {
			t = *x
		}
	}
	if t.IsZero() {
		return `<span class="muted">never</span>`
	}
	abs := t.UTC().Format("2006-01-02 15:04:05 UTC")
	return template.HTML(fmt.Sprintf(`<time datetime="%s" title="%s">%s</time> <span class="abs">%s</span>`, //nolint:gosec // only formatted times
		t.UTC().Format(time.RFC3339), abs, relative(t, now), abs))
}

// relative is "just now", "5 min ago", "3 h ago", "2 days ago" (or "in …").
func relative(t, now time.Time) string {
	d := now.Sub(t)
	switch {
	case d > -10*time.Second && d < 10*time.Second:
		return "just now"
	case d < 0:
		return "in " + span(-d)
	}
	return span(d) + " ago"
}

// span is a duration in one rounded unit: 42 s, 5 min, 3 h, 2 days.
func span(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func shortDigest(d fmt.Stringer) string {
	s := d.String()
	if _, hex, ok := strings.Cut(s, ":"); ok && len(hex) > 12 {
		return s[:len(s)-len(hex)] + hex[:12]
	}
	return s
}

// pct is done of total in percent (0 when total is 0).
func pct(done, total int64) int64 {
	if total <= 0 {
		return 0
	}
	return done * 100 / total
}

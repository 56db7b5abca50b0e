package statuspage

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io"
	"strconv"
	"strings"
	"time"
)

var (
	//go:embed status.html
	pageHTML string
	//go:embed status.css
	styleText string
	//go:embed status.js
	scriptText string
)

// The inline style and script go into the page verbatim, and the
// Content-Security-Policy allows exactly them by their hashes: nothing
// else runs, loads or connects except to this origin's JSON.
var (
	style  = template.CSS(styleText)
	script = template.JS(scriptText)
	csp    = "default-src 'none'; style-src '" + cspHash(styleText) + "'; script-src '" + cspHash(scriptText) +
		"'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// view is what the template renders.
type view struct {
	Page
	Style  template.CSS
	Script template.JS
}

var pageTemplate = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"value": formatValue,
	"rate":  formatRate,
	"since": func(t, now time.Time) string {
		if t.IsZero() {
			return ""
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	},
	"join": strings.Join,
	"utc":  func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(pageHTML))

// formatValue is a number as the page marks it (data-value) and shows it:
// Go's shortest exact form, which /metrics' values parse back to.
func formatValue(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// formatRate is a rate per second for display.
func formatRate(r *float64) string {
	if r == nil {
		return "–"
	}
	if *r != 0 && *r < 0.1 {
		return strconv.FormatFloat(*r, 'f', 3, 64) + "/s"
	}
	return strconv.FormatFloat(*r, 'f', 1, 64) + "/s"
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // a failed write is the client gone
}

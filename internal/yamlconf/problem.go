package yamlconf

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one config error. Its Error text is "FILE:LINE: FIELD: MSG",
// which editors and CI logs turn into links.
type Problem struct {
	// File is the file's path as it was given to Load (or the name given to
	// Parse).
	File string
	// Line is the 1-based line of the offending YAML node; 0 when the
	// problem concerns the whole file (it cannot be read, for instance).
	Line int
	// Field is the path of the offending field inside the file, such as
	// "descriptors[0].rate_limit.unit"; "" for file-level problems.
	Field string
	// Msg says what is wrong and what is allowed.
	Msg string
	// Err is the underlying cause, when there is one (a file-system or YAML
	// syntax error), so that errors.Is and errors.As see through.
	Err error
}

// Error formats the problem as "FILE:LINE: FIELD: MSG".
func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, or nil.
func (p Problem) Unwrap() error { return p.Err }

// Problems is every problem found in a config; it is the error the loaders
// return. Its Error text has one "FILE:LINE: message" per line.
type Problems []Problem

// Error joins the problems, one per line.
func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems as errors, so errors.Is and errors.As look at
// each of them.
func (ps Problems) Unwrap() []error {
	errs := make([]error, len(ps))
	for i := range ps {
		errs[i] = ps[i]
	}
	return errs
}

// MaxProblems bounds the report: a file of garbage must not produce an
// unbounded list.
const MaxProblems = 1000

// ProblemList collects problems in the order they are found, at most
// MaxProblems of them. The zero value is empty and ready to use.
type ProblemList struct {
	list      Problems
	truncated bool
}

// Add records a problem; past MaxProblems it only notes that there were
// more.
func (l *ProblemList) Add(p Problem) {
	if len(l.list) >= MaxProblems {
		l.truncated = true
		return
	}
	l.list = append(l.list, p)
}

// Found returns the problems recorded so far, in the order they were
// found. The caller must not modify them.
func (l *ProblemList) Found() Problems { return l.list }

// Result returns the problems sorted by file order (the order files were
// given, from fileOrder) and line, or nil when there are none. When
// problems were dropped, a last one says so.
func (l *ProblemList) Result(fileOrder map[string]int) error {
	if len(l.list) == 0 {
		return nil
	}
	out := slices.Clone(l.list)
	slices.SortStableFunc(out, func(a, b Problem) int {
		if c := cmp.Compare(fileOrder[a.File], fileOrder[b.File]); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
	if l.truncated {
		last := out[len(out)-1]
		out = append(out, Problem{File: last.File, Line: last.Line,
			Msg: fmt.Sprintf("too many problems; stopped after %d", MaxProblems)})
	}
	return out
}

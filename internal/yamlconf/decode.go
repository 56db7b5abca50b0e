package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// yamlLine finds the line number in yaml.v3's syntax error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// Decode returns the file's first YAML document, or nil for an empty file.
// A second non-empty document is an error, since it would be silently
// ignored: "yaml: line N: a second YAML document; " and secondDoc, which
// says what a file holds instead.
func Decode(data []byte, secondDoc string) (doc *yaml.Node, err error) {
	// yaml.v3 reports syntax errors by panicking internally and recovering;
	// this recover only guards against a bug in it turning a bad file into a
	// crash of the whole service.
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("yaml: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			return &first, nil
		}
		if err != nil {
			return nil, err
		}
		if len(next.Content) > 0 && !IsNull(next.Content[0]) {
			return nil, fmt.Errorf("yaml: line %d: a second YAML document; %s", next.Content[0].Line, secondDoc)
		}
	}
}

// syntaxError records a YAML syntax error. yaml.v3 names no line for errors
// on the first line, names the line where the enclosing block starts rather
// than the offending one for many errors, and puts errors at the end of the
// stream one line past a final newline; all three are mapped onto the line
// that is most likely at fault.
func (p *Parser) syntaxError(data []byte, err error) {
	line, msg := splitYAMLError(err)
	lines := bytes.Count(data, []byte("\n"))
	if len(data) > 0 && data[len(data)-1] != '\n' {
		lines++
	}
	if r := refineLine(data, line, msg, p.style.SecondDocument); r <= lines {
		line = r
	}
	line = max(1, min(line, lines))
	p.problems.Add(Problem{File: p.File, Line: line, Msg: "invalid YAML: " + msg, Err: err})
}

// splitYAMLError returns the line yaml.v3 names in an error (1 when it names
// none, which it does for the first line) and the message without it.
func splitYAMLError(err error) (int, string) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, msg[len(m[0]):]
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

// maxRefineLines bounds how far past yaml.v3's line refineLine looks; each
// step parses the file's beginning again.
const maxRefineLines = 200

// refineLine returns the first line at or after from such that the file cut
// after it fails with the same message, which is where the error shows;
// failing that, a line past the end (no refinement).
func refineLine(data []byte, from int, msg, secondDoc string) int {
	// Offset of the end of line from-1 (the cut before line from).
	end := 0
	for l := 1; l < from; l++ {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			return math.MaxInt
		}
		end += i + 1
	}
	for l := from; l < from+maxRefineLines && end < len(data); l++ {
		i := bytes.IndexByte(data[end:], '\n')
		if i < 0 {
			end = len(data)
		} else {
			end += i + 1
		}
		if _, err := Decode(data[:end], secondDoc); err != nil {
			if _, m := splitYAMLError(err); m == msg {
				return l
			}
		}
	}
	return math.MaxInt
}

package arch

import (
	"fmt"
	"strings"
)

// indentProblem looks for the line that broke a file the YAML parser
// refused: the parser often reports the start of the block it was in (a
// mis-indented line 6 at line 2), and says "found character that cannot
// start any token" for a tab. It finds the first line indented with a tab,
// or indented to a depth that matches none of the blocks it could close
// back to. Block scalars (| and >) are skipped: anything goes inside them.
func indentProblem(data []byte) (line int, msg string, ok bool) {
	var levels []int   // indentation of the open blocks, outermost first
	scalarIndent := -1 // inside a block scalar: lines indented more than this belong to it
	for i, text := range strings.Split(string(data), "\n") {
		text = strings.TrimRight(text, "\r")
		body := strings.TrimLeft(text, " \t")
		if body == "" || strings.HasPrefix(body, "#") {
			continue
		}
		lead := text[:len(text)-len(body)]
		indent := len(lead)
		if scalarIndent >= 0 {
			if indent > scalarIndent {
				continue
			}
			scalarIndent = -1
		}
		if strings.Contains(lead, "\t") {
			return i + 1, "a tab in the indentation: YAML indents with spaces only", true
		}
		if body == "---" || body == "..." {
			levels = levels[:0]
			continue
		}
		switch {
		case len(levels) == 0 || indent > levels[len(levels)-1]:
			levels = append(levels, indent)
		case indent < levels[len(levels)-1]:
			open := levels
			for len(levels) > 0 && levels[len(levels)-1] > indent {
				levels = levels[:len(levels)-1]
			}
			if len(levels) == 0 || levels[len(levels)-1] != indent {
				return i + 1, fmt.Sprintf("the line is indented by %d spaces, which matches none of the blocks it could belong to (%s)",
					indent, spaces(open)), true
			}
		}
		if strings.HasSuffix(body, "|") || strings.HasSuffix(body, ">") || strings.HasSuffix(body, "|-") || strings.HasSuffix(body, ">-") {
			scalarIndent = indent
		}
	}
	return 0, "", false
}

func spaces(levels []int) string {
	if len(levels) == 0 {
		return "none is open"
	}
	var s []string
	for _, l := range levels {
		s = append(s, fmt.Sprint(l))
	}
	if len(s) == 1 {
		return s[0] + " spaces"
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1] + " spaces"
}

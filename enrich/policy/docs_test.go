package policy

import (
	"os"
	"regexp"
	"testing"
)

// The policy examples of the README and docs/detections.md parse: the
// documentation shows files flowlens accepts.
func TestDocumentedExamplesParse(t *testing.T) {
	for _, c := range []struct {
		path string
		re   *regexp.Regexp
	}{
		{"../../README.md", regexp.MustCompile("(?s)cat > policy.yaml <<'YAML'\n(.*?)\nYAML\n")},
		{"../../docs/detections.md", regexp.MustCompile("(?s)```yaml\n(.*?)```")},
	} {
		b, err := os.ReadFile(c.path)
		if err != nil {
			t.Fatal(err)
		}
		ms := c.re.FindAllSubmatch(b, -1)
		if len(ms) == 0 {
			t.Errorf("%s: no policy example found", c.path)
		}
		for _, m := range ms {
			p, err := Parse(c.path, m[1])
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
				continue
			}
			if len(p.Pools()) == 0 || len(p.Rules) == 0 {
				t.Errorf("%s: example has no pools or rules", c.path)
			}
		}
	}
}

package mapping

import "testing"

// FuzzParseMapping: any bytes as a mapping file give a mapping or problems with a line, never a panic.
func FuzzParseMapping(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("version: 1\nfields: [{name: a, pc: name, sf: Name, type: enum}]\nstages: {hold: a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parse("f.yaml", data)
		if ps, ok := err.(Problems); ok {
			for _, p := range ps {
				if p.Line < 1 || p.Message == "" {
					t.Fatalf("problem without line or message: %+v", p)
				}
			}
		}
	})
}

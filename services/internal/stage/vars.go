package stage

import (
	"fmt"
	"reflect"
	"strings"
)

// configVars lists the environment variables a config struct reads, with defaults and help, for --help.
func configVars(cfg any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			env := f.Tag.Get("env")
			if env == "" {
				if f.Type.Kind() == reflect.Struct && f.Type.String() != "time.Time" {
					walk(f.Type)
				}
				continue
			}
			line := fmt.Sprintf("%-28s", env)
			var notes []string
			if f.Tag.Get("required") == "true" {
				notes = append(notes, "required")
			}
			if d, ok := f.Tag.Lookup("default"); ok {
				notes = append(notes, "default "+d)
			}
			if h := f.Tag.Get("help"); h != "" {
				notes = append(notes, h)
			}
			out = append(out, strings.TrimSpace(line+" "+strings.Join(notes, "; ")))
		}
	}
	walk(reflect.TypeOf(cfg))
	return out
}

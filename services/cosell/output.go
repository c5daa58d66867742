package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// outputFormats are the values of -o, as kubectl names them.
var outputFormats = []string{"table", "json", "yaml"}

// output is the -o flag of a command that prints data.
type output struct{ format string }

func (o *output) String() string { return o.format }
func (o *output) Type() string   { return "format" }
func (o *output) Set(s string) error {
	for _, f := range outputFormats {
		if s == f {
			o.format = s
			return nil
		}
	}
	return fmt.Errorf("unknown output format %q: use %s", s, strings.Join(outputFormats, ", "))
}

// jsonAlias is the older --json flag, kept as a hidden alias of -o json.
type jsonAlias struct{ o *output }

func (j jsonAlias) String() string   { return "false" }
func (j jsonAlias) Type() string     { return "bool" }
func (j jsonAlias) IsBoolFlag() bool { return true }
func (j jsonAlias) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	if on {
		j.o.format = "json"
	}
	return nil
}

// addOutput gives a command -o/--output (table, json or yaml) and the hidden --json alias.
func addOutput(cmd *cobra.Command) *output {
	o := &output{format: "table"}
	fs := cmd.Flags()
	fs.VarP(o, "output", "o", "output format: table, json or yaml")
	fs.AddFlag(&pflag.Flag{Name: "json", Usage: "same as -o json", Value: jsonAlias{o}, NoOptDefVal: "true", Hidden: true})
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))
	return o
}

// print writes v as JSON or YAML (the same field names either way), or calls table for the human view.
func (o *output) print(w io.Writer, v any, table func(io.Writer)) {
	if o.structured() && v != nil {
		// An addressable copy, so the nil lists in it can be filled in.
		cp := reflect.New(reflect.TypeOf(v)).Elem()
		cp.Set(reflect.ValueOf(v))
		emptyLists(cp)
		v = cp.Interface()
	}
	switch o.format {
	case "json":
		printJSON(w, v)
	case "yaml":
		printYAML(w, v)
	default:
		table(w)
	}
}

// structured is true when the output is for a program (json or yaml), not a person.
func (o *output) structured() bool { return o.format == "json" || o.format == "yaml" }

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// printYAML renders v's JSON form as YAML, so both formats carry the same names (the json tags) in the
// same order: JSON is YAML, so the JSON document is parsed as a YAML node tree and re-encoded in block style.
func printYAML(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintf(w, "# cannot render as YAML: %v\n", err)
		return
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		fmt.Fprintf(w, "# cannot render as YAML: %v\n", err)
		return
	}
	var blockStyle func(n *yaml.Node)
	blockStyle = func(n *yaml.Node) {
		n.Style = 0
		for _, c := range n.Content {
			blockStyle(c)
		}
	}
	blockStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		fmt.Fprintf(w, "# cannot render as YAML: %v\n", err)
		return
	}
	_ = enc.Close()
	_, _ = w.Write(buf.Bytes())
}

// emptyLists replaces every nil slice reachable from v (through pointers, interfaces, struct fields, map
// values and elements) with an empty one, so JSON and YAML print an empty list as [] rather than null.
// Types with their own JSON encoding (json.RawMessage) are left as they are.
func emptyLists(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptyLists(v.Elem())
		}
	case reflect.Interface:
		if v.IsNil() || !v.CanSet() {
			return
		}
		cp := reflect.New(v.Elem().Type()).Elem()
		cp.Set(v.Elem())
		emptyLists(cp)
		v.Set(cp)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				emptyLists(f)
			}
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			cp := reflect.New(v.Type().Elem()).Elem()
			cp.Set(v.MapIndex(k))
			emptyLists(cp)
			v.SetMapIndex(k, cp)
		}
	case reflect.Slice:
		if v.IsNil() {
			if v.CanSet() && !v.Type().Implements(marshalerType) {
				v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			}
			return
		}
		fallthrough
	case reflect.Array:
		for i := range v.Len() {
			emptyLists(v.Index(i))
		}
	}
}

var marshalerType = reflect.TypeFor[json.Marshaler]()

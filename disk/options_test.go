package disk

import (
	"errors"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	got, err := ParseOptions("subformat=fixed, force_size=on,name=a,,b")
	if err != nil || got["subformat"] != "fixed" || got["force_size"] != "on" || got["name"] != "a,b" || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"novalue", "=x", "a=1,a=2"} {
		if _, err := ParseOptions(bad); !errors.Is(err, ErrOption) {
			t.Errorf("ParseOptions(%q) = %v", bad, err)
		}
	}
	if got, err := ParseOptions(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v %v", got, err)
	}
}

func TestCheckOptions(t *testing.T) {
	f := Format{Name: "vpc", Options: []Option{{Name: "subformat", Values: []string{"dynamic", "fixed"}}, {Name: "force_size", Values: []string{"on", "off"}}}}
	tests := []struct {
		opt  CreateOptions
		want string // "" for no error
	}{
		{CreateOptions{Options: map[string]string{"subformat": "fixed"}}, ""},
		{CreateOptions{Options: map[string]string{"subformat": "fixd"}}, "subformat takes dynamic, fixed"},
		{CreateOptions{Options: map[string]string{"cluster_size": "2M"}}, `no option "cluster_size"; they take subformat, force_size`},
		{CreateOptions{Compress: true}, "cannot be compressed"},
	}
	for _, tt := range tests {
		err := f.CheckOptions(tt.opt)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%+v: %v", tt.opt, err)
		case tt.want != "" && (!errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%+v: %v; want %q", tt.opt, err, tt.want)
		}
	}
	if err := (Format{Name: "raw"}).CheckOptions(CreateOptions{Options: map[string]string{"x": "1"}}); err == nil || !strings.Contains(err.Error(), "raw images take no options") {
		t.Errorf("raw: %v", err)
	}
}

package jsonproto

import (
	"testing"

	genvm "github.com/ucphhpc/gen-vm-image-go"
)

func TestResponseJSON(t *testing.T) {
	tests := []struct {
		name string
		r    Response
		want string
	}{
		{"success", NewResponse("", nil, false, nil),
			"{\n    \"response\": \"\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
		{"failure with messages", NewResponse("", []string{"a <b> & c"}, true, &genvm.Error{Code: genvm.CodeChecksum, Msg: "bad"}),
			"{\n    \"response\": \"bad\",\n    \"return_code\": 6,\n    \"status\": \"failed\",\n    \"verbose_messages\": [\n        \"a <b> & c\"\n    ]\n}"},
		{"non-ASCII escaped as Python does", NewResponse("blå 😀", nil, false, nil),
			"{\n    \"response\": \"bl\\u00e5 \\ud83d\\ude00\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
		{"messages hidden without verbose", NewResponse("ok", []string{"x"}, false, nil),
			"{\n    \"response\": \"ok\",\n    \"return_code\": 0,\n    \"status\": \"success\",\n    \"verbose_messages\": []\n}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.r.MarshalPython()
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got\n%s\nwant\n%s", b, tc.want)
			}
		})
	}
}

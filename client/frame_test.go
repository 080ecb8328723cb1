package client

import (
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"
)

func TestParseFrame(t *testing.T) {
	ok := []struct {
		in   string
		want frame
	}{
		{`{"op":"pong","id":"p1"}`, frame{op: "pong", id: "p1"}},
		{`{"op":"pong"}`, frame{op: "pong"}},
		{`{"op":"future","x":1}`, frame{op: "future"}},
		{`{"id":"x","op":"sync","obj":"room/42","persistent":true,"epoch":"k2","version":18,"extra":[1],"changes":[{"code":"clear"},{"code":"change","name":"t","value":{"a":[1, 2]},"oldValue":null},{"code":"delete","name":"d"},{"code":"success","name":"s"},{"code":"reject","name":"r","reason":"conflict"},{"code":"later"}]}`,
			frame{op: "sync", ev: Event{Sync: &Sync{Obj: "room/42", Persistent: true, Epoch: "k2", Version: 18, ID: "x", Changes: []SyncEntry{
				{Code: "clear"},
				{Code: "change", Name: "t", Value: json.RawMessage(`{"a":[1, 2]}`), OldValue: json.RawMessage(`null`)},
				{Code: "delete", Name: "d"},
				{Code: "success", Name: "s"},
				{Code: "reject", Name: "r", Reason: "conflict"},
				{Code: "later"},
			}}}}},
		{`{"op":"sync","obj":"o","epoch":"e","version":9007199254740991,"changes":[]}`,
			frame{op: "sync", ev: Event{Sync: &Sync{Obj: "o", Epoch: "e", Version: 1<<53 - 1, Changes: nil}}}},
		{`{"op":"message","obj":"o","persistent":false,"handler":"chat","args":["a",{"b":1}],"from":"bob","id":"c-1"}`,
			frame{op: "message", ev: Event{Message: &Message{Obj: "o", Handler: "chat", Args: json.RawMessage(`["a",{"b":1}]`), From: "bob", ID: "c-1"}}}},
		{`{"op":"error","code":"busy","message":"retry","id":"c-2","obj":"o","persistent":true}`,
			frame{op: "error", ev: Event{Error: &ServerError{Code: "busy", Message: "retry", ID: "c-2", Obj: "o", Persistent: true}}}},
		{`{"op":"error","code":"bad_json","message":"not JSON"}`,
			frame{op: "error", ev: Event{Error: &ServerError{Code: "bad_json", Message: "not JSON"}}}},
		{`{"op":"hello","session":"s","user":"","limits":{"max_changes":5,"frames_per_second":2.5,"new_limit":1}}`,
			frame{op: "hello", hello: Hello{Session: "s", Limits: Limits{MaxChanges: 5, FramesPerSecond: 2.5}}}},
	}
	for _, tt := range ok {
		got, err := parseFrame(tt.in)
		if err != nil {
			t.Errorf("parseFrame(%s): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseFrame(%s)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}

	bad := []string{
		``, `[]`, `"op"`, `{"op":"sync"`, `{}`, `{"op":1}`,
		`{"op":"hello","session":"s","user":"u"}`,
		`{"op":"hello","session":"s","user":"u","limits":{"max_slots":"many"}}`,
		`{"op":"pong","id":7}`,
		`{"op":"sync","epoch":"e","version":1,"changes":[]}`,
		`{"op":"sync","obj":"o","version":1,"changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1.5,"changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":-1,"changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":9007199254740992,"changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":"1","changes":[]}`,
		`{"op":"sync","obj":"o","persistent":"yes","epoch":"e","version":1,"changes":[]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":{}}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[1]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[{"name":"a"}]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[{"code":"change","name":"a"}]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[{"code":"delete"}]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[{"code":"reject","name":"a","reason":1}]}`,
		`{"op":"message","obj":"o","handler":"h","from":"u"}`,
		`{"op":"message","obj":"o","handler":"h","args":{},"from":"u"}`,
		`{"op":"error","code":"busy"}`,
	}
	for _, in := range bad {
		if f, err := parseFrame(in); err == nil {
			t.Errorf("parseFrame(%s) = %+v, want an error", in, f)
		}
	}
}

func TestAppendFrames(t *testing.T) {
	b, err := appendUpdate(nil, "c7-1", "room/\"42\"\n", true, []Change{
		{Name: "topic", Base: 17, Value: json.RawMessage(`"Hello"`)},
		{Name: "draft", Base: 17, Delete: true},
	})
	want := `{"op":"update","obj":"room/\"42\"\n","persistent":true,"id":"c7-1","changes":[{"name":"topic","base":17,"value":"Hello"},{"name":"draft","base":17,"delete":true}]}`
	if err != nil || string(b) != want {
		t.Errorf("appendUpdate = %s, %v\nwant %s", b, err, want)
	}
	if b := appendSub(nil, "s1", "o", false, 0, "e"); string(b) != `{"op":"sub","obj":"o","persistent":false,"id":"s1","version":0,"epoch":"e"}` {
		t.Errorf("appendSub = %s", b)
	}
	if b := appendPing(nil, "p1"); string(b) != `{"op":"ping","id":"p1"}` {
		t.Errorf("appendPing = %s", b)
	}
}

// FuzzParseFrame checks that no input panics the parser, and that what it accepts is consistent.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		testHello,
		`{"op":"sync","obj":"room/42","persistent":true,"epoch":"k2Jq9","version":18,"id":"c7-1","changes":[{"code":"success","name":"topic"}]}`,
		`{"op":"sync","obj":"o","epoch":"e","version":1,"changes":[{"code":"clear"},{"code":"change","name":"a","value":"x","oldValue":1},{"code":"delete","name":"b"}]}`,
		`{"op":"message","obj":"o","handler":"chat","args":["alice","hi"],"from":"alice","id":"c7-2"}`,
		`{"op":"error","code":"value_too_large","message":"too big","id":"c7-9","obj":"room/42","persistent":true}`,
		`{"op":"pong","id":"p1"}`,
		`{"op":"sync","obj":"\u0000","epoch":"","version":1e3,"changes":[{"code":"change","name":"a","value":[}]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fr, err := parseFrame(s)
		if err != nil {
			return
		}
		n := 0
		for _, set := range []bool{fr.ev.Sync != nil, fr.ev.Message != nil, fr.ev.Error != nil} {
			if set {
				n++
			}
		}
		want := map[string]int{"sync": 1, "message": 1, "error": 1}[fr.op]
		if n != want {
			t.Fatalf("op %q: %d of Sync/Message/Error set, want %d", fr.op, n, want)
		}
		if fr.ev.Sync != nil {
			for _, e := range fr.ev.Sync.Changes {
				if e.Value != nil && !json.Valid(e.Value) {
					t.Fatalf("entry value %q is not valid JSON", e.Value)
				}
			}
		}
	})
}

// FuzzAppendField checks that any string survives a round trip through the frame builders.
func FuzzAppendField(f *testing.F) {
	f.Add("room/42")
	f.Add("a\"b\\c\n\x00<&>\u2028é")
	f.Add("\xff")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendPing(nil, s)
		var got struct{ ID string }
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("appendPing(%q) = %s: %v", s, b, err)
		}
		if utf8.ValidString(s) && got.ID != s {
			t.Fatalf("round trip of %q gave %q", s, got.ID)
		}
	})
}

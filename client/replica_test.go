package client

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestReplicaApply(t *testing.T) {
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	var r Replica
	steps := []struct {
		name  string
		sync  Sync
		slots map[string]json.RawMessage
	}{
		{"full state", Sync{Epoch: "e1", Version: 5, Changes: []SyncEntry{
			{Code: CodeClear}, {Code: CodeChange, Name: "a", Value: raw(`1`)}, {Code: CodeChange, Name: "b", Value: raw(`"x"`)},
		}}, map[string]json.RawMessage{"a": raw(`1`), "b": raw(`"x"`)}},
		{"change and delete", Sync{Epoch: "e1", Version: 6, Changes: []SyncEntry{
			{Code: CodeChange, Name: "a", Value: raw(`null`), OldValue: raw(`1`)}, {Code: CodeDelete, Name: "b", OldValue: raw(`"x"`)},
		}}, map[string]json.RawMessage{"a": raw(`null`)}},
		{"own update: success and reject leave slots alone", Sync{Epoch: "e1", Version: 7, ID: "c-1", Changes: []SyncEntry{
			{Code: CodeSuccess, Name: "c"}, {Code: CodeReject, Name: "a", Value: raw(`2`), Reason: "conflict"}, {Code: "future", Name: "a"},
		}}, map[string]json.RawMessage{"a": raw(`null`)}},
		{"empty delta", Sync{Epoch: "e1", Version: 7}, map[string]json.RawMessage{"a": raw(`null`)}},
		{"new epoch: clear then state", Sync{Epoch: "e2", Version: 1, Changes: []SyncEntry{
			{Code: CodeClear}, {Code: CodeChange, Name: "z", Value: raw(`[]`)},
		}}, map[string]json.RawMessage{"z": raw(`[]`)}},
		{"clear mid-frame drops what came before", Sync{Epoch: "e2", Version: 2, Changes: []SyncEntry{
			{Code: CodeChange, Name: "y", Value: raw(`1`)}, {Code: CodeClear},
		}}, map[string]json.RawMessage{}},
	}
	for _, st := range steps {
		r.Apply(&st.sync)
		if !reflect.DeepEqual(r.Slots, st.slots) || r.Epoch != st.sync.Epoch || r.Version != st.sync.Version {
			t.Errorf("%s: replica = %+v, want slots %v at %s/%d", st.name, r, st.slots, st.sync.Epoch, st.sync.Version)
		}
	}
}

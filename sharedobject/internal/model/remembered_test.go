package model

import (
	"testing"
	"time"
)

// The memory of request ids is stated in time: what the log's clock says, on every replica alike.
func TestRequestIDsExpireByTheLogsClock(t *testing.T) {
	s := NewStateWith(time.Second, 1<<20)
	commit := func(ts int64, id string) {
		s.Advance(ts)
		s.Apply(&Commit{Version: s.Version + 1, ID: id, User: "u", FP: 7, Sets: []SlotValue{{"n", []byte("1")}}}, 100)
	}
	commit(1000, "r1")
	for i := range 5000 { // thousands of requests in the same second: all remembered
		commit(1500, "x"+string(rune('a'+i%26))+time.Duration(i).String())
	}
	if s.Remembered("u", "r1") == nil {
		t.Fatal("r1 forgotten inside the window")
	}
	commit(2000, "r2") // exactly one window later: still remembered
	if s.Remembered("u", "r1") == nil {
		t.Fatal("r1 forgotten at the window's end")
	}
	commit(2001, "r3")
	if s.Remembered("u", "r1") != nil || s.Remembered("u", "r2") == nil {
		t.Fatal("r1 kept past the window, or r2 lost")
	}
	if s.Remembered("v", "r2") != nil {
		t.Fatal("another user's id answered")
	}
}

func TestRequestMemoryRoomCountsWhatExpires(t *testing.T) {
	m := newRequestMemory(time.Second, 3*RecordBytes)
	for i := range 3 {
		m.advance(int64(1000 + i))
		m.add(&Record{key: uint64(i + 1), fp: 1})
	}
	if m.wouldFit(RecordBytes, 1500) {
		t.Fatal("a full memory of live ids has room")
	}
	if !m.wouldFit(RecordBytes, 2001) || m.wouldFit(2*RecordBytes, 2001) {
		t.Fatal("room once the oldest id expires is not one record")
	}
}

// A replica loaded from a snapshot forgets at the same entry as one that read the whole log, also when the
// snapshot holds records of both forms (with and without fingerprints, during a rolling upgrade).
func TestSnapshotReplicaForgetsLikeTheLiveOne(t *testing.T) {
	live := NewStateWith(time.Second, 1<<20)
	commit := func(s *State, ts int64, id string, fp uint64) {
		s.Advance(ts)
		s.Apply(&Commit{Version: s.Version + 1, ID: id, User: "u", FP: fp, Sets: []SlotValue{{"n", []byte("1")}}}, 100)
	}
	commit(live, 1000, "new1", 5)
	commit(live, 1500, "old1", 0) // written by a node of the previous version
	e, err := DecodeEntry(EncodeSnapshot(live))
	if err != nil {
		t.Fatal(err)
	}
	loaded := e.Snap
	loaded.mem.window, loaded.mem.budget = live.mem.window, live.mem.budget
	for _, s := range []*State{live, loaded} {
		commit(s, 2200, "later", 6)
	}
	for _, id := range []string{"new1", "old1", "later"} {
		if a, b := live.Remembered("u", id) != nil, loaded.Remembered("u", id) != nil; a != b {
			t.Errorf("%s: live replica remembers it %v, the one loaded from the snapshot %v", id, a, b)
		}
	}
	if live.mem.bytes != loaded.mem.bytes {
		t.Errorf("memory of %d bytes live, %d loaded", live.mem.bytes, loaded.mem.bytes)
	}
}

package relay

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// FuzzTCPReader: whatever bytes arrive, in whatever pieces, the reader yields exactly the complete lines
// (trimmed, empty ones skipped), reports each line longer than the limit once as too large, and never
// buffers more than the limit.
func FuzzTCPReader(f *testing.F) {
	f.Add([]byte("{\"op\":\"ping\"}\n\n  {\"a\":1}\r\n"), uint8(3))
	f.Add([]byte(strings.Repeat("x", 100)+"\nok\n"), uint8(7))
	f.Add([]byte("no newline at the end"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, piece uint8) {
		const max = 40
		server, client := net.Pipe()
		defer server.Close()
		go func() {
			defer client.Close()
			step := int(piece)%17 + 1
			for i := 0; i < len(data); i += step {
				if _, err := client.Write(data[i:min(i+step, len(data))]); err != nil {
					return
				}
			}
		}()
		tc := &tcpConn{nc: server}
		var got []string
		tc.readLoop(max, func() time.Time { return time.Now().Add(5 * time.Second) }, func(frame []byte, tooLarge int) {
			if tooLarge > 0 {
				if frame != nil || tooLarge <= max {
					t.Fatalf("a line of %d bytes reported too large (limit %d)", tooLarge, max)
				}
				got = append(got, "<too large>")
				return
			}
			if len(frame) > max {
				t.Fatalf("frame of %d bytes passed a limit of %d", len(frame), max)
			}
			got = append(got, string(frame))
		})
		var want []string
		lines := bytes.Split(data, []byte("\n"))
		for _, line := range lines[:len(lines)-1] { // the last piece has no newline: never delivered
			switch {
			case len(line)+1 > max+2 || len(bytes.TrimSpace(line)) > max:
				want = append(want, "<too large>")
			case len(bytes.TrimSpace(line)) > 0:
				want = append(want, string(bytes.TrimSpace(line)))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("got %q\nwant %q", got, want)
		}
	})
}

// A TCP client that does not read is closed as a slow consumer: its queue is dropped and the last frame
// it gets is the close frame with 4008.
func TestTCPSlowConsumer(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	tc := newTCPConn(server, 100, nil)
	for i := 0; tc.Send([]byte(`{"op":"x","pad":"................"}`)) == nil; i++ {
		if i > 100 {
			t.Fatal("queue never filled")
		}
	}
	// The writer may have taken a first burst before the queue overflowed; after that only the close frame.
	r := bufio.NewReader(client)
	client.SetReadDeadline(time.Now().Add(waitLimit))
	frames := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if gjson.Get(line, "op").Str == "close" {
			if code := gjson.Get(line, "code").Int(); code != 4008 {
				t.Fatalf("close frame %q", line)
			}
			break
		}
		frames++
	}
	<-tc.Done()
	if frames >= 3 { // 100 bytes hold at most two frames
		t.Fatalf("%d frames before the close; the queue was not dropped", frames)
	}
}

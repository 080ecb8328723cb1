//go:build unix

package wsconn

import "syscall"

// rawReads: this system's sockets can be read through syscall.RawConn (poll.go).
const rawReads = true

// rawRead reads what the socket has; when it has nothing, the runtime waits for readability and calls it
// again. (Every call reads: the runtime forgets a readiness it saw before the wait began, so a wait not
// preceded by a read could miss data that arrived in between.)
func (c *netConn) rawRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), c.p)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN {
			return false
		}
		c.n, c.errno = max(n, 0), err
		return true
	}
}

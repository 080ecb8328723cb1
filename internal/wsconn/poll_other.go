//go:build !unix

package wsconn

// rawReads: elsewhere idle connections wait in gorilla's own reads (a larger stack, nothing else differs).
const rawReads = false

func (c *netConn) rawRead(fd uintptr) bool { return true }

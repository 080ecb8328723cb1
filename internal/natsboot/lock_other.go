//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package natsboot

// lockDir is a no-op where flock is not available: do not point two servers at one data folder.
func lockDir(dir string) (unlock func(), err error) { return func() {}, nil }

//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package natsboot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	lockFile = "nats.lock"
	// lockWait covers a server in this process that is still letting go of the folder (its lock is
	// released just after WaitForShutdown returns) and a previous process that is still exiting.
	lockWait = time.Second
	lockPoll = 20 * time.Millisecond
)

// lockDir takes an exclusive lock on dir so two servers never write the same JetStream files.
// The kernel drops the lock when the process dies, so a crash leaves nothing to clean up.
func lockDir(dir string) (unlock func(), err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot use data folder %s: %s", dir, reason(err))
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
				holder = " (pid " + strings.TrimSpace(string(b)) + ")"
			}
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("data folder %s is %w%s", dir, ErrDataDirLocked, holder)
			}
			return nil, fmt.Errorf("cannot lock data folder %s: %s", dir, reason(err))
		}
		time.Sleep(lockPoll)
	}
	// The pid is only a hint for the error message above; failing to write it is harmless.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}

//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || loong64)

package lifecycle

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sigchld is the kernel's siginfo_t for SIGCHLD on 64-bit Linux of the
// usual layout (x/sys/unix leaves its union unnamed; on 32-bit
// architectures the fields sit elsewhere, and MIPS orders the header
// differently: siginfo_other.go): the child's pid, uid and status follow the
// three header fields and their padding.
type sigchld struct {
	Signo, Errno, Code, _ int32
	Pid                   int32
	UID                   uint32
	Status                int32
	_                     [100]byte
}

// waitStatus is the wait status that reaping the child will give, read
// from waitid's siginfo.
func waitStatus(info *unix.Siginfo) (syscall.WaitStatus, bool) {
	c := (*sigchld)(unsafe.Pointer(info))
	// si_code for SIGCHLD (linux/include/uapi/asm-generic/siginfo.h).
	const cldExited, cldKilled, cldDumped = 1, 2, 3
	switch c.Code {
	case cldExited:
		return syscall.WaitStatus(c.Status&0xff) << 8, true
	case cldKilled:
		return syscall.WaitStatus(c.Status & 0x7f), true
	case cldDumped:
		return syscall.WaitStatus(c.Status&0x7f | 0x80), true
	}
	return 0, false
}

// sigchld and unix.Siginfo are the same size: this does not compile
// otherwise.
var _ = [1]struct{}{}[unsafe.Sizeof(sigchld{})-unsafe.Sizeof(unix.Siginfo{})]

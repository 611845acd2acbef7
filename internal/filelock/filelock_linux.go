package filelock

import (
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Magic numbers of the shared file systems whose flock may not be coherent
// across nodes (statfs(2) f_type).
var sharedFileSystems = map[int64]string{
	0x6969:     "nfs",
	0x0bd00bd0: "lustre",
	0x00c36400: "ceph",
	0x47504653: "gpfs",
	0x19830326: "beegfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse", // sshfs, s3fs, glusterfs and other FUSE mounts
}

// autoMode: Exclusive on a shared file system, Flock elsewhere.
func autoMode(name string) Mode {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(name), &st); err != nil {
		return Flock
	}
	if _, shared := sharedFileSystems[int64(st.Type)&0xffffffff]; shared {
		return Exclusive
	}
	return Flock
}

// touch sets the lock file's times to the file system's now (the
// server's, on NFS), never following a link.
func touch(name string) {
	now := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	unix.UtimesNanoAt(unix.AT_FDCWD, name, now, unix.AT_SYMLINK_NOFOLLOW)
}

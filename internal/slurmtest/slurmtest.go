//go:build linux

// Package slurmtest runs a one-node Slurm cluster on 127.0.0.1 for tests:
// munged, slurmctld and slurmd from Debian's slurm-wlm and munge, with a
// generated slurm.conf and munge key in a temporary directory, stopped by
// their PIDs when the test ends. It needs root (the daemons and the jobs
// run as root) and no cgroups (proctrack/linuxproc, task/none).
package slurmtest

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireEnv turns a missing Slurm into a failure; .ci/run sets it.
const RequireEnv = "GVI_REQUIRE_SLURM"

// Cluster is a running one-node cluster.
type Cluster struct {
	Dir  string // its configuration, state and logs
	Conf string // slurm.conf: SLURM_CONF for the client commands
}

// Env is the environment client commands (sbatch, squeue) need, added to
// the current one.
func (c *Cluster) Env() []string {
	return append(os.Environ(), "SLURM_CONF="+c.Conf)
}

// Start starts the cluster, or skips the test (fails it when
// GVI_REQUIRE_SLURM=1) without Slurm, munge or root.
func Start(t testing.TB) *Cluster {
	t.Helper()
	for _, prog := range []string{"munged", "slurmctld", "slurmd", "sbatch", "sinfo"} {
		if _, err := exec.LookPath(prog); err != nil {
			skip(t, prog+" not found (apt-get install slurm-wlm munge)")
		}
	}
	if os.Geteuid() != 0 {
		skip(t, "the Slurm daemons need root")
	}
	dir, err := os.MkdirTemp("", "gvi-slurm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"munge", "state", "spool", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(dir, 0o755) // jobs run as root, but munge checks the path's modes
	key := make([]byte, 1024)
	rand.Read(key)
	keyFile := filepath.Join(dir, "munge", "munge.key")
	if err := os.WriteFile(keyFile, key, 0o400); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "munge", "socket")
	c := &Cluster{Dir: dir, Conf: filepath.Join(dir, "slurm.conf")}
	pidFiles := []string{filepath.Join(dir, "munge", "munged.pid"), filepath.Join(dir, "slurmctld.pid"), filepath.Join(dir, "slurmd.pid")}
	t.Cleanup(func() { stop(pidFiles) })

	run(t, c, "munged", "--force", "--key-file="+keyFile, "--socket="+socket, "--pid-file="+pidFiles[0],
		"--log-file="+filepath.Join(dir, "log", "munged.log"), "--seed-file="+filepath.Join(dir, "munge", "seed"))
	ctldPort, dPort := freePort(t), freePort(t)
	conf := fmt.Sprintf(`ClusterName=gvitest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=%d
SlurmdPort=%d
AuthType=auth/munge
AuthInfo=socket=%s
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=%s
SlurmdSpoolDir=%s
SlurmctldPidFile=%s
SlurmdPidFile=%s
SlurmctldLogFile=%s
SlurmdLogFile=%s
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=8192 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`, ctldPort, dPort, socket, filepath.Join(dir, "state"), filepath.Join(dir, "spool"), pidFiles[1], pidFiles[2],
		filepath.Join(dir, "log", "slurmctld.log"), filepath.Join(dir, "log", "slurmd.log"))
	if err := os.WriteFile(c.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, c, "slurmctld", "-f", c.Conf)
	run(t, c, "slurmd", "-f", c.Conf, "-N", "localhost")
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, _ := c.Command("sinfo", "-h", "-N", "-o", "%T").Output()
		if strings.TrimSpace(string(out)) == "idle" {
			return c
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(dir, "log", "slurmctld.log"))
			t.Fatalf("the Slurm node is not idle after 60 s (sinfo: %q)\n%s", out, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Command is a client command (sbatch, squeue, ...) for the cluster.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = c.Env()
	return cmd
}

func run(t testing.TB, c *Cluster, name string, args ...string) {
	t.Helper()
	cmd := c.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
}

// stop ends the daemons whose PID files are given, and waits for them.
func stop(pidFiles []string) {
	var pids []int
	for i := len(pidFiles) - 1; i >= 0; i-- {
		b, err := os.ReadFile(pidFiles[i])
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGTERM)
			pids = append(pids, pid)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func skip(t testing.TB, why string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s and %s=1", why, RequireEnv)
	}
	t.Skipf("%s: Slurm test skipped (set %s=1 to make this fail)", why, RequireEnv)
}

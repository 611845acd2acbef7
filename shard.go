package genvm

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/ucphhpc/gen-vm-image-go/arch"
)

// Shard is one part of an architecture, for builds split over the tasks
// of a Slurm job array or a Kubernetes Indexed Job: task Index of Count
// builds the images ShardOf assigns to it. The zero Shard is the whole
// architecture.
type Shard struct {
	Index, Count int
	// From says where Index and Count came from ("--shard 1/4",
	// "SLURM_ARRAY_TASK_ID=5 ..."), for messages.
	From string
}

// ShardOf is the shard of count that builds the image with key: the
// shard with the highest score sha256(key, shard) (rendezvous hashing).
// It depends on the key and count only, so every task of a job computes
// the same assignment, adding or removing an image moves no other, and
// changing the count moves only the images the new shard wins (or the
// removed one held).
func ShardOf(key string, count int) int {
	best, bestScore := 0, uint64(0)
	var buf [8]byte
	for i := 0; i < count; i++ {
		h := sha256.New()
		h.Write([]byte(key))
		h.Write([]byte{0})
		binary.BigEndian.PutUint64(buf[:], uint64(i))
		h.Write(buf[:])
		score := binary.BigEndian.Uint64(h.Sum(nil))
		if i == 0 || score > bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// Select returns a copy of a with only the images of shard s (all of them
// for the zero Shard), in file order.
func (s Shard) Select(a *arch.Architecture) *arch.Architecture {
	if s.Count <= 1 {
		return a
	}
	out := *a
	out.Images = nil
	for _, im := range a.Images {
		if ShardOf(im.Key, s.Count) == s.Index {
			out.Images = append(out.Images, im)
		}
	}
	return &out
}

func (s Shard) String() string {
	if s.Count == 0 {
		return "all images"
	}
	return fmt.Sprintf("shard %d of %d (%s)", s.Index, s.Count, s.From)
}

// ParseShard reads --shard's value: "I/N" (0 <= I < N), or "auto", which
// takes I and N from the environment a scheduler gives each task:
//
//   - Slurm job arrays: SLURM_ARRAY_TASK_ID minus SLURM_ARRAY_TASK_MIN
//     (divided by SLURM_ARRAY_TASK_STEP when set) of SLURM_ARRAY_TASK_COUNT;
//   - Kubernetes Indexed Jobs: JOB_COMPLETION_INDEX of shards (--shards N:
//     Kubernetes does not tell a pod the job's completions).
//
// shards is --shards (0 when not given); getenv looks the variables up.
// A missing or inconsistent value is a CodeInvalidAttribute error that
// names it.
func ParseShard(value string, shards int, getenv func(string) string) (Shard, error) {
	bad := func(format string, args ...any) (Shard, error) {
		return Shard{}, Errorf(CodeInvalidAttribute, nil, "Invalid --shard: "+format, args...)
	}
	if shards < 0 {
		return bad("--shards %d: the number of shards must be at least 1", shards)
	}
	if value != "auto" {
		i, n, ok := strings.Cut(value, "/")
		index, err1 := strconv.Atoi(strings.TrimSpace(i))
		count, err2 := strconv.Atoi(strings.TrimSpace(n))
		switch {
		case !ok || err1 != nil || err2 != nil:
			return bad("%q: give I/N (shard I of N, counting from 0, e.g. 0/4), or auto under Slurm or Kubernetes", value)
		case count < 1:
			return bad("%q: the number of shards must be at least 1", value)
		case index < 0 || index >= count:
			return bad("%q: the shard must be 0 to %d (counting from 0)", value, count-1)
		case shards != 0 && shards != count:
			return bad("%q says %d shards and --shards says %d", value, count, shards)
		}
		return Shard{Index: index, Count: count, From: "--shard " + value}, nil
	}
	number := func(name string) (int, bool, error) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return 0, false, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, true, Errorf(CodeInvalidAttribute, err, "Invalid --shard auto: %s=%q is not a number", name, v)
		}
		return n, true, nil
	}
	id, slurm, err := number("SLURM_ARRAY_TASK_ID")
	if err != nil {
		return Shard{}, err
	}
	if slurm {
		count, ok, err := number("SLURM_ARRAY_TASK_COUNT")
		if err != nil {
			return Shard{}, err
		}
		if !ok {
			return bad("auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (Slurm sets both in an array job: sbatch --array=0-3)")
		}
		min, ok, err := number("SLURM_ARRAY_TASK_MIN")
		if err != nil {
			return Shard{}, err
		}
		if !ok {
			return bad("auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_MIN is not (Slurm sets both in an array job: sbatch --array=0-3)")
		}
		step, ok, err := number("SLURM_ARRAY_TASK_STEP")
		if err != nil {
			return Shard{}, err
		}
		if !ok || step == 0 {
			step = 1
		}
		from := fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d, SLURM_ARRAY_TASK_MIN=%d, SLURM_ARRAY_TASK_COUNT=%d", id, min, count)
		if id < min || (id-min)%step != 0 || (id-min)/step >= count || count < 1 {
			return bad("auto: %s do not describe one task of a contiguous array (submit a range, --array=0-%d, not a list)", from, max(count-1, 0))
		}
		if shards != 0 && shards != count {
			return bad("auto: SLURM_ARRAY_TASK_COUNT=%d and --shards %d disagree; leave --shards out under Slurm", count, shards)
		}
		return Shard{Index: (id - min) / step, Count: count, From: from}, nil
	}
	index, k8s, err := number("JOB_COMPLETION_INDEX")
	if err != nil {
		return Shard{}, err
	}
	if k8s {
		if shards == 0 {
			return bad("auto: JOB_COMPLETION_INDEX=%d is set (a Kubernetes Indexed Job) but --shards is not; give --shards N with N the job's completions", index)
		}
		if index >= shards {
			return bad("auto: JOB_COMPLETION_INDEX=%d is not below --shards %d; --shards must be the job's completions", index, shards)
		}
		return Shard{Index: index, Count: shards, From: fmt.Sprintf("JOB_COMPLETION_INDEX=%d, --shards %d", index, shards)}, nil
	}
	return bad("auto: neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; give --shard I/N outside them")
}

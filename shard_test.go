package genvm

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ucphhpc/gen-vm-image-go/arch"
)

func TestShardOfIsStableAndBalanced(t *testing.T) {
	const n = 4
	keys := make([]string, 400)
	for i := range keys {
		keys[i] = fmt.Sprintf("image-%d", i)
	}
	counts := make([]int, n)
	for _, k := range keys {
		s := ShardOf(k, n)
		if s < 0 || s >= n {
			t.Fatalf("ShardOf(%q) = %d", k, s)
		}
		if ShardOf(k, n) != s {
			t.Fatalf("ShardOf(%q) changed between calls", k)
		}
		counts[s]++
	}
	for i, c := range counts {
		if c < 60 || c > 140 { // 100 expected
			t.Errorf("shard %d has %d of 400 images: %v", i, c, counts)
		}
	}
	// A fifth shard takes images only from the others, and only for itself.
	moved := 0
	for _, k := range keys {
		if a, b := ShardOf(k, n), ShardOf(k, n+1); a != b {
			if b != n {
				t.Fatalf("%q moved from shard %d to %d when shard %d was added", k, a, b, n)
			}
			moved++
		}
	}
	if moved == 0 || moved > 140 {
		t.Errorf("%d of 400 images moved to the new shard", moved)
	}
	if ShardOf("x", 1) != 0 {
		t.Error("one shard is shard 0")
	}
}

func TestShardSelectPartitions(t *testing.T) {
	a := &arch.Architecture{Owner: "o"}
	for i := 0; i < 16; i++ {
		a.Images = append(a.Images, arch.Image{Key: fmt.Sprintf("k%d", i)})
	}
	seen := map[string]int{}
	for i := 0; i < 4; i++ {
		for _, im := range (Shard{Index: i, Count: 4}).Select(a).Images {
			seen[im.Key]++
		}
	}
	if len(seen) != 16 {
		t.Fatalf("the shards hold %d of 16 images", len(seen))
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s is in %d shards", k, c)
		}
	}
	// Removing an image leaves every other where it was.
	b := &arch.Architecture{Owner: "o", Images: a.Images[1:]}
	for i := 0; i < 4; i++ {
		for _, im := range (Shard{Index: i, Count: 4}).Select(b).Images {
			if ShardOf(im.Key, 4) != i {
				t.Errorf("%s moved", im.Key)
			}
		}
	}
	if len((Shard{}).Select(a).Images) != 16 {
		t.Error("the zero shard is every image")
	}
}

func TestParseShard(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	none := env()
	for _, c := range []struct {
		value  string
		shards int
		getenv func(string) string
		index  int
		count  int
		bad    string // a word the error must name
	}{
		{value: "0/4", getenv: none, index: 0, count: 4},
		{value: "3/4", getenv: none, index: 3, count: 4},
		{value: "4/4", getenv: none, bad: "0 to 3"},
		{value: "1/0", getenv: none, bad: "at least 1"},
		{value: "x", getenv: none, bad: "I/N"},
		{value: "1/4", shards: 3, getenv: none, bad: "--shards"},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "5", "SLURM_ARRAY_TASK_MIN", "4", "SLURM_ARRAY_TASK_COUNT", "4"), index: 1, count: 4},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "4", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_COUNT", "4", "SLURM_ARRAY_TASK_STEP", "2"), index: 2, count: 4},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "5", "SLURM_ARRAY_TASK_MIN", "0"), bad: "SLURM_ARRAY_TASK_COUNT"},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "5", "SLURM_ARRAY_TASK_COUNT", "2"), bad: "SLURM_ARRAY_TASK_MIN"},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "9", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_COUNT", "3"), bad: "a range"},
		{value: "auto", getenv: env("SLURM_ARRAY_TASK_ID", "one"), bad: "SLURM_ARRAY_TASK_ID"},
		{value: "auto", shards: 3, getenv: env("SLURM_ARRAY_TASK_ID", "1", "SLURM_ARRAY_TASK_MIN", "0", "SLURM_ARRAY_TASK_COUNT", "4"), bad: "disagree"},
		{value: "auto", shards: 3, getenv: env("JOB_COMPLETION_INDEX", "2"), index: 2, count: 3},
		{value: "auto", getenv: env("JOB_COMPLETION_INDEX", "2"), bad: "--shards"},
		{value: "auto", shards: 2, getenv: env("JOB_COMPLETION_INDEX", "2"), bad: "JOB_COMPLETION_INDEX"},
		{value: "auto", getenv: none, bad: "SLURM_ARRAY_TASK_ID"},
	} {
		s, err := ParseShard(c.value, c.shards, c.getenv)
		if c.bad != "" {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeInvalidAttribute || !strings.Contains(err.Error(), c.bad) {
				t.Errorf("ParseShard(%q, %d) = %v, want code 5 naming %q", c.value, c.shards, err, c.bad)
			}
			continue
		}
		if err != nil || s.Index != c.index || s.Count != c.count {
			t.Errorf("ParseShard(%q, %d) = %+v, %v; want %d/%d", c.value, c.shards, s, err, c.index, c.count)
		}
	}
}

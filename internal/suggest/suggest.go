// Package suggest finds what a user probably meant to type: the "did you
// mean" of a mistyped command, option, choice or key.
package suggest

// Closest returns the candidate closest to what was typed, when one is
// close enough to be a typo (an edit distance of at most a third of its
// length, and 3), or "".
func Closest(typed string, candidates []string) string {
	best, bestDist := "", 4
	for _, c := range candidates {
		d := Distance(typed, c)
		if d < bestDist && d <= max(1, len(c)/3) {
			best, bestDist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance between a and b, with the swap of
// two neighbours counted as one edit (the commonest typo).
func Distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

package sharedobject

// changeRate counts an object's recent traffic (slot changes and messages) in six buckets of ten
// seconds, by the timestamps of the log entries, so that a catch-up through old entries does not look
// like activity now. The admin API lists objects by it ("sort":"rate").
type changeRate struct {
	buckets [rateBuckets]struct {
		at int64 // the bucket's start, in units of rateBucketMs
		n  int
	}
}

const (
	rateBuckets  = 6
	rateBucketMs = 10_000
)

func (r *changeRate) add(tsMs int64, n int) {
	at := tsMs / rateBucketMs
	b := &r.buckets[at%rateBuckets]
	switch {
	case at < b.at:
		return // older than the window
	case at > b.at:
		b.at, b.n = at, 0
	}
	b.n += n
}

// lastMinute is the traffic of the current bucket and the five before it (50 to 60 s).
func (r *changeRate) lastMinute(nowMs int64) int {
	now := nowMs / rateBucketMs
	total := 0
	for _, b := range r.buckets {
		if b.at > now-rateBuckets && b.at <= now {
			total += b.n
		}
	}
	return total
}

package rebalance

import (
	"context"
	"sync"
	"time"
)

// bucket is a token bucket that may go into debt: take(n) always succeeds
// at once when tokens are available, and otherwise sleeps until the debt
// is paid back at rate tokens/s. Debt lets a caller charge a cost it only
// learns afterwards (the bytes of a batch) and pay for it before the next
// batch. The burst is a tenth of a second's worth, so the rate is smooth
// rather than bursty. rate <= 0 means unlimited. Not safe for concurrent
// use (one per migrator).
type bucket struct {
	mu     sync.Mutex // batches of one source take concurrently
	rate   float64
	tokens float64
	last   time.Time
	now    func() time.Time
	sleep  func(context.Context, time.Duration) error
}

func newBucket(rate float64) *bucket {
	return &bucket{rate: rate, tokens: rate / 10, now: time.Now, sleep: sleepCtx}
}

func (b *bucket) take(ctx context.Context, n float64) error {
	if b == nil || b.rate <= 0 {
		return nil
	}
	// Reserve the tokens now (the balance may go negative: the debt is
	// what later takers wait for too), then wait outside the lock.
	b.mu.Lock()
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.rate/10, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= n
	debt := -b.tokens
	b.mu.Unlock()
	if debt <= 0 {
		return nil
	}
	return b.sleep(ctx, time.Duration(debt/b.rate*float64(time.Second)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

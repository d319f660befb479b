package rebalance

import (
	"context"
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
	now := b.now()
	if !b.last.IsZero() {
		b.tokens = min(b.rate/10, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	b.tokens -= n
	if b.tokens >= 0 {
		return nil
	}
	wait := time.Duration(-b.tokens / b.rate * float64(time.Second))
	if err := b.sleep(ctx, wait); err != nil {
		return err
	}
	b.tokens, b.last = 0, b.now()
	return nil
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

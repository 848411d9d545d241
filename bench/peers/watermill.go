package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// The peer: the FizzBuzz job on Watermill over JetStream, as a Go user
// would most likely build it, tuned (see peerConfig). A generator
// publishes 0 … n-1 (message IDs, so that a restart's republish is
// dropped by the stream); a worker handler turns each number into its
// FizzBuzz result; a logger handler appends each result's value to a file
// (its books: what a SIGKILL cannot take back), and the process ends
// once every value is in the file. Its own embedded server, on file
// storage in dir, dies with it, as robust's does with its supervisor.

const (
	topicNumbers = "wm.numbers"
	topicResults = "wm.results"
	topicPoison  = "wm.poison"
)

// runWatermill runs the peer on dir until every value of n is logged.
func runWatermill(ctx context.Context, dir string, n uint64) error {
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		return errors.New("embedded server not ready")
	}
	defer ns.Shutdown()
	url := ns.ClientURL()

	// Streams made once, up front: with AutoProvision each publish asks
	// for the stream's info first, which halves the throughput.
	nc, err := nats.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return err
	}
	for _, t := range []string{topicNumbers, topicResults, topicPoison} {
		cfg := &nats.StreamConfig{Name: streamName(t), Subjects: []string{t}, Storage: nats.FileStorage}
		if _, err := js.StreamInfo(cfg.Name); errors.Is(err, nats.ErrStreamNotFound) {
			if _, err := js.AddStream(cfg); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
	}

	logger := watermill.NopLogger{}
	marshaler := wmnats.GobMarshaler{}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL: url, Marshaler: marshaler,
		JetStream: wmnats.JetStreamConfig{TrackMsgId: true},
	}, logger)
	if err != nil {
		return err
	}
	defer pub.Close()
	sub := func(durable string) (*wmnats.Subscriber, error) {
		return wmnats.NewSubscriber(wmnats.SubscriberConfig{
			URL: url, QueueGroupPrefix: durable, SubscribersCount: 32, AckWaitTimeout: 30 * time.Second,
			CloseTimeout: 5 * time.Second, Unmarshaler: marshaler,
			JetStream: wmnats.JetStreamConfig{
				AckAsync: true, DurablePrefix: durable, TrackMsgId: true,
				SubscribeOptions: []nats.SubOpt{nats.DeliverAll(), nats.AckExplicit(), nats.ManualAck()},
			},
		}, logger)
	}
	workerSub, err := sub("worker")
	if err != nil {
		return err
	}
	loggerSub, err := sub("logger")
	if err != nil {
		return err
	}

	// The books: every value logged, in a file that survives a SIGKILL.
	seen, lines, err := readBooks(dir)
	if err != nil {
		return err
	}
	books, err := os.OpenFile(booksPath(dir), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer books.Close()
	var mu sync.Mutex
	done := make(chan struct{})
	if uint64(len(seen)) >= n {
		close(done)
	}
	_ = lines

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	if err != nil {
		return err
	}
	poison, err := middleware.PoisonQueue(pub, topicPoison)
	if err != nil {
		return err
	}
	router.AddMiddleware(poison, middleware.Retry{MaxRetries: 3, InitialInterval: 10 * time.Millisecond}.Middleware, middleware.Recoverer)
	router.AddHandler("worker", topicNumbers, workerSub, topicResults, pub, func(m *message.Message) ([]*message.Message, error) {
		v, err := strconv.ParseUint(string(m.Payload), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("malformed number %q: %w", m.Payload, err)
		}
		return []*message.Message{message.NewMessage("r-"+strconv.FormatUint(v, 10), []byte(strconv.FormatUint(v, 10)+" "+fizzBuzz(v)))}, nil
	})
	router.AddNoPublisherHandler("logger", topicResults, loggerSub, func(m *message.Message) error {
		var v uint64
		var text string
		if _, err := fmt.Sscan(string(m.Payload), &v, &text); err != nil {
			return fmt.Errorf("malformed result %q: %w", m.Payload, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if _, err := fmt.Fprintf(books, "%d\n", v); err != nil {
			return err
		}
		seen[v] = struct{}{}
		if uint64(len(seen)) == n {
			close(done)
		}
		return nil
	})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	routed := make(chan error, 1)
	go func() { routed <- router.Run(rctx) }()
	<-router.Running()

	// The generator: every value, with its ID (a restart publishes them
	// all again; the stream drops the copies within its 2-minute window).
	// Eight publishers at once: Watermill's publish waits for each ack.
	gen := make(chan error, 1)
	go func() {
		const workers = 8
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range uint64(workers) {
			wg.Go(func() {
				for v := w; v < n && rctx.Err() == nil; v += workers {
					m := message.NewMessage("n-"+strconv.FormatUint(v, 10), []byte(strconv.FormatUint(v, 10)))
					if err := pub.Publish(topicNumbers, m); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		gen <- <-errs
	}()
	select {
	case <-done:
	case err := <-gen:
		if err != nil {
			return fmt.Errorf("generator: %w", err)
		}
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		case err := <-routed:
			return fmt.Errorf("router: %v", err)
		}
	case err := <-routed:
		return fmt.Errorf("router: %v", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	cancel()
	_ = router.Close()
	return nil
}

func streamName(topic string) string {
	switch topic {
	case topicNumbers:
		return "WM_NUMBERS"
	case topicResults:
		return "WM_RESULTS"
	}
	return "WM_POISON"
}

func booksPath(dir string) string { return dir + "/logged.txt" }

// readBooks reads the values logged so far: the distinct ones and how
// many lines (a value logged twice is two lines).
func readBooks(dir string) (map[uint64]struct{}, uint64, error) {
	seen := map[uint64]struct{}{}
	f, err := os.Open(booksPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return seen, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var lines uint64
	s := bufio.NewScanner(f)
	for s.Scan() {
		v, err := strconv.ParseUint(s.Text(), 10, 64)
		if err != nil {
			continue // a line cut by the SIGKILL
		}
		seen[v] = struct{}{}
		lines++
	}
	return seen, lines, s.Err()
}

func fizzBuzz(v uint64) string {
	switch {
	case v%15 == 0:
		return "FizzBuzz"
	case v%3 == 0:
		return "Fizz"
	case v%5 == 0:
		return "Buzz"
	}
	return strconv.FormatUint(v, 10)
}

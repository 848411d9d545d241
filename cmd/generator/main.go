// Command generator is the generator actor process. The supervisor starts it through
// go-plugin; run bin/supervisor, not this.
package main

import (
	"fmt"
	"os"

	"github.com/robust/robust/internal/actor"
	"github.com/robust/robust/internal/actors"
)

func main() {
	if err := actor.ServeProducer(actors.Generator{}); err != nil {
		fmt.Fprintf(os.Stderr, "generator: %v\n", err)
		os.Exit(actor.ExitCode(err))
	}
}

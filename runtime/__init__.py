"""How the bot runs: the app factory that wires bot/, commands/ and blocks/ together, and the processes built
on it (HTTP, Socket Mode, the clock and its jobs, the command line). The only layer that knows all the others."""

"""Platform adapters: each turns its platform's payloads into IncomingMessage and renders Reply."""

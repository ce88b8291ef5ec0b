const server = Bun.serve({
  port: Number(process.env.PORT ?? 3000),
  fetch() {
    return new Response("Hello via Bun!");
  },
});

console.log(`Listening on ${server.url}`);

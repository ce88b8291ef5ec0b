const server = Bun.serve({
  port: Number(process.env.PORT ?? 3000),
  hostname: "0.0.0.0",
  fetch: () => new Response("hello from node-bun-module\n"),
});
console.log(`node-bun-module listening on ${server.port}`);

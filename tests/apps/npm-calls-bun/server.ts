import ms from "ms";

const port = Number(process.env.PORT ?? 3000);
Bun.serve({
  port,
  fetch() {
    return new Response(`npm app started by bun, up for ${ms(Math.round(performance.now()))}`);
  },
});
console.log(`listening on ${port}`);

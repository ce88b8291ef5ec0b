import express from 'express';
const app = express();
app.get('/', (_req, res) => res.send('hello from node-nx'));
app.listen(Number(process.env.PORT ?? 3000), '0.0.0.0');

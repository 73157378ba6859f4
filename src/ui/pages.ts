/**
 * The pages: /dashboard (health bureau), /dashboard/supervision (its supervision of declines) and /app (doctor's
 * prior-results view). Their data comes from the APIs.
 */
import express, { type Router } from 'express';
import { sendPage } from './assets.js';

export function pagesRouter(): Router {
  const router = express.Router();
  router.get('/dashboard', async (_req, res, next) => {
    try {
      await sendPage(res, 'dashboard');
    } catch (e) {
      next(e);
    }
  });
  router.get('/dashboard/supervision', async (_req, res, next) => {
    try {
      await sendPage(res, 'supervision');
    } catch (e) {
      next(e);
    }
  });
  return router;
}

# Reference values for tests/stats/test_frailty.py: Gaussian frailty Cox models
#   coxph(Surv(time, status) ~ x + frailty(center, distribution = "gaussian"))
# fitted with R's DEFAULT control (what users see in print(fit)) and, for the fully
# converged answer, with tightened tolerances ("_tight").
# Run from the repository root:  Rscript tests/stats/r/frailty_reference.R
# (survival 3.5-3; writes tests/stats/data/rats.csv if absent, never overwrites data files)
suppressMessages({library(survival); library(jsonlite)})
rd <- function(name) read.csv(file.path("tests/stats/data", paste0(name, ".csv")))
out <- list()

# What print(fit) shows, plus the raw pieces the tests compare.
fr <- function(fit) {
  h <- fit$history[[1]]
  # print's "Variance of random effect=" is the theta of the LAST inner fit (last history
  # row); h$theta is the next proposal, never used for a fit.
  theta_used <- if (!is.null(h$history)) h$history[nrow(h$history), 1] else h$theta
  i <- which(fit$pterms > 0)
  if (fit$pterms[i] == 2) {
    test <- sum(fit$frail^2 / fit$fvar)
    effects <- fit$frail
  } else {
    kk <- fit$assign2[[i]]
    test <- coxph.wtest(fit$var[kk, kk], coef(fit)[kk])$test
    effects <- unname(coef(fit)[kk])
  }
  nx <- length(coef(fit)) - if (fit$pterms[i] == 2) 0 else length(fit$assign2[[i]])
  list(coef = unname(coef(fit))[seq_len(nx)], se = unname(sqrt(diag(fit$var)))[seq_len(nx)],
       se2 = unname(sqrt(diag(fit$var2)))[seq_len(nx)], theta = theta_used,
       theta_next = h$theta, loglik = fit$loglik, penalty = fit$penalty,
       frail = unname(effects), df = unname(fit$df), frail_chisq = test,
       frail_df = unname(fit$df[i]),
       frail_p = pchisq(test, max(fit$df[i], 0.5), lower.tail = FALSE),
       iter = fit$iter, n = fit$n, nevent = fit$nevent,
       concordance = unname(fit$concordance["concordance"]),
       lr_chisq = -2 * (fit$loglik[1] - fit$loglik[2]), lr_df = round(sum(fit$df), 2),
       lr_p = pchisq(-2 * (fit$loglik[1] - fit$loglik[2]), round(sum(fit$df), 2),
                     lower.tail = FALSE),
       history = if (is.null(h$history)) NULL else unname(h$history[, 1:2, drop = FALSE]),
       printed = capture.output(print(fit)))
}
tight <- coxph.control(eps = 1e-12, outer.max = 60, iter.max = 50, toler.chol = 1e-15)
both <- function(key, formula, data, ...) {
  out[[paste0(key, "_default")]] <<- fr(coxph(formula, data = data, ...))
  out[[paste0(key, "_tight")]] <<- fr(coxph(formula, data = data, control = tight, ...))
}

# survival::lung, 18 institutions as centers -> sparse; REML drives theta towards 0 and
# R's default stops after 10 outer steps of halving theta
lung <- rd("lung")
lungc <- na.omit(lung[, c("time", "status", "age", "sex", "inst", "ph.ecog")])
both("lung", Surv(time, status) ~ age + sex + frailty(inst, distribution = "gaussian"), lungc)
# ECOG score (4 levels) as the "center" -> not sparse, real between-group variance
both("lung_ecog", Surv(time, status) ~ age + sex + frailty(ph.ecog, distribution = "gaussian"), lungc)

# survival::veteran, 4 cell types as "centers" -> not sparse
veteran <- rd("veteran")
both("veteran", Surv(time, status) ~ karno + trt + frailty(celltype, distribution = "gaussian"), veteran)
# fixed theta (R method "fixed": one inner fit from zero), and the sparse rule overridden
both("veteran_fixed", Surv(time, status) ~ karno + trt +
       frailty(celltype, distribution = "gaussian", theta = 0.5), veteran)
both("veteran_sparse", Surv(time, status) ~ karno + trt +
       frailty(celltype, distribution = "gaussian", sparse = TRUE), veteran)
both("veteran_breslow", Surv(time, status) ~ karno + trt + frailty(celltype, distribution = "gaussian"),
     veteran, ties = "breslow")

# synthetic 3-center study with a real center effect (seeded in R; CSV written once)
if (!file.exists("tests/stats/data/frailty_sim.csv")) {
  set.seed(7)
  n <- 600; center <- sample(c("A", "B", "C"), n, replace = TRUE)
  u <- c(A = -0.5, B = 0.1, C = 0.6)[center]
  score <- rnorm(n); risk <- rbinom(n, 1, 0.4)
  tt <- rexp(n, 0.05 * exp(0.8 * risk + 0.3 * score + u)); cc <- runif(n, 5, 60)
  sim <- data.frame(time = round(pmin(tt, cc), 1), status = as.integer(tt <= cc), risk = risk,
                    score = round(score, 4), center = center)
  write.csv(sim, "tests/stats/data/frailty_sim.csv", row.names = FALSE)
}
sim <- rd("frailty_sim")
both("sim", Surv(time, status) ~ risk + score + frailty(center, distribution = "gaussian"), sim)

# 8 centers -> sparse with a non-zero variance
if (!file.exists("tests/stats/data/frailty_sim8.csv")) {
  set.seed(11)
  n <- 800; center <- sample(paste0("site", 1:8), n, replace = TRUE)
  u <- rnorm(8, 0, 0.5); names(u) <- paste0("site", 1:8)
  x <- rnorm(n); grp <- rbinom(n, 1, 0.5)
  tt <- rexp(n, 0.03 * exp(0.5 * x + 0.7 * grp + u[center])); cc <- runif(n, 10, 80)
  sim8 <- data.frame(time = round(pmin(tt, cc), 1), status = as.integer(tt <= cc),
                     x = round(x, 4), grp = grp, center = center)
  write.csv(sim8, "tests/stats/data/frailty_sim8.csv", row.names = FALSE)
}
sim8 <- rd("frailty_sim8")
both("sim8", Surv(time, status) ~ x + grp + frailty(center, distribution = "gaussian"), sim8)
both("sim8_fixed", Surv(time, status) ~ x + grp +
       frailty(center, distribution = "gaussian", theta = 0.3), sim8)
both("sim8_dense", Surv(time, status) ~ x + grp +
       frailty(center, distribution = "gaussian", sparse = FALSE), sim8)

# survival::rats: 100 litters of 3 -> sparse, the textbook frailty example
if (!file.exists("tests/stats/data/rats.csv"))
  write.csv(survival::rats, "tests/stats/data/rats.csv", row.names = FALSE)
rats <- rd("rats")
both("rats", Surv(time, status) ~ rx + sex + frailty(litter, distribution = "gaussian"), rats)

# survival::colon, death records (etype 2): tumour extent (4 levels, not sparse) and a
# made-up 12-site center (sparse, no true center effect)
colon <- rd("colon")
colond <- colon[colon$etype == 2, ]
colond$site <- paste0("s", colond$id %% 12)
both("colon_extent", Surv(time, status) ~ rx + age + sex + obstruct + node4 +
       frailty(extent, distribution = "gaussian"), colond)
both("colon_site12", Surv(time, status) ~ age + sex + obstruct + node4 +
       frailty(site, distribution = "gaussian"), colond)

# survival::pbc (all 418, death = status 2): histologic stage (4 levels, not sparse) and a
# made-up 9-site center (sparse)
pbc <- rd("pbc")
pbcs <- pbc[!is.na(pbc$stage), ]
pbcs$death <- as.integer(pbcs$status == 2)
pbcs$logbili <- log(pbcs$bili)
pbcs$site <- paste0("s", pbcs$id %% 9)
both("pbc_stage", Surv(time, death) ~ age + logbili + albumin +
       frailty(stage, distribution = "gaussian"), pbcs)
both("pbc_site9", Surv(time, death) ~ age + logbili + albumin + edema +
       frailty(site, distribution = "gaussian"), pbcs)

write_json(out, "tests/stats/reference/frailty.json", digits = NA, auto_unbox = TRUE, na = "null")
cat("written\n")

package huren.conformance;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.DefaultProfileValidationSupport;
import ca.uhn.fhir.parser.IParser;
import ca.uhn.fhir.validation.FhirValidator;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationResult;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.hl7.fhir.common.hapi.validation.support.CommonCodeSystemsTerminologyService;
import org.hl7.fhir.common.hapi.validation.support.InMemoryTerminologyServerValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.PrePopulatedValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.SnapshotGeneratingValidationSupport;
import org.hl7.fhir.common.hapi.validation.support.ValidationSupportChain;
import org.hl7.fhir.common.hapi.validation.validator.FhirInstanceValidator;
import org.hl7.fhir.instance.model.api.IBaseResource;

/**
 * The HL7 reference validator (HAPI FHIR's FhirInstanceValidator, the engine of the official validator) run offline
 * over a folder of FHIR R4 JSON files: one JVM for the whole folder.
 *
 * <p>Usage: {@code Validate <profiles-dir> <input-dir>}. Every *.json of profiles-dir (Huren's StructureDefinitions,
 * CodeSystems, ValueSets) is loaded next to the R4 core definitions; every *.json under input-dir is validated. The
 * output (stdout) is one JSON object per line: {"file": "...", "issues": [{"severity", "location", "message",
 * "messageId"}]}.
 */
public final class Validate {
  private Validate() {}

  public static void main(String[] args) throws IOException {
    if (args.length != 2) {
      System.err.println("usage: Validate <profiles-dir> <input-dir>");
      System.exit(2);
    }
    FhirContext ctx = FhirContext.forR4Cached();
    IParser parser = ctx.newJsonParser();

    PrePopulatedValidationSupport own = new PrePopulatedValidationSupport(ctx);
    for (Path file : jsonFiles(Path.of(args[0]))) {
      IBaseResource resource = parser.parseResource(Files.readString(file, StandardCharsets.UTF_8));
      own.addResource(resource);
    }

    ValidationSupportChain chain =
        new ValidationSupportChain(
            new DefaultProfileValidationSupport(ctx),
            own,
            new CommonCodeSystemsTerminologyService(ctx),
            new InMemoryTerminologyServerValidationSupport(ctx),
            new SnapshotGeneratingValidationSupport(ctx));
    FhirInstanceValidator module = new FhirInstanceValidator(chain);
    FhirValidator validator = ctx.newValidator();
    validator.registerValidatorModule(module);

    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    Path root = Path.of(args[1]);
    for (Path file : jsonFiles(root)) {
      StringBuilder line = new StringBuilder();
      line.append("{\"file\":").append(quote(root.relativize(file).toString())).append(",\"issues\":[");
      try {
        ValidationResult result = validator.validateWithResult(Files.readString(file, StandardCharsets.UTF_8));
        boolean first = true;
        for (SingleValidationMessage m : result.getMessages()) {
          if (!first) line.append(',');
          first = false;
          line.append("{\"severity\":")
              .append(quote(m.getSeverity().getCode()))
              .append(",\"location\":")
              .append(quote(m.getLocationString()))
              .append(",\"message\":")
              .append(quote(m.getMessage()))
              .append(",\"messageId\":")
              .append(quote(m.getMessageId()))
              .append('}');
        }
      } catch (Exception e) {
        // A file the parser cannot read at all (not JSON, not a resource) is an error of that file, not of the run.
        line.append("{\"severity\":\"fatal\",\"location\":\"\",\"message\":")
            .append(quote(String.valueOf(e.getMessage())))
            .append(",\"messageId\":\"exception\"}");
      }
      line.append("]}");
      out.println(line);
    }
  }

  private static List<Path> jsonFiles(Path dir) throws IOException {
    List<Path> files = new ArrayList<>();
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.filter(p -> Files.isRegularFile(p) && p.toString().endsWith(".json")).sorted().forEach(files::add);
    }
    return files;
  }

  private static String quote(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20 || Character.isSurrogate(c)) b.append(String.format("\\u%04x", (int) c));
          else b.append(c);
        }
      }
    }
    return b.append('"').toString();
  }
}
